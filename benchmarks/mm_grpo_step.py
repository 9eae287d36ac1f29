"""A multimodal GRPO step (and an SDL step) on a random tiny Qwen3-VL with image observations.

The device check for issue 13 item 6: the policy is a vision-language model (the released
policy's architecture, Qwen3-VL, at toy size), rollouts run the agent graph with
``show_images`` (thumbnails after the ``<tool_response>`` text) and a user reference image in
every row, and every forward of the trainer gets the pixel values. The script prints one JSON
line per trainer kind with the mean step time (after warm-up), the images per rollout, whether
every forward saw pixel values, how many parameter tensors changed (vision tower and language
model) and the peak memory, then ``"ok": true`` when all checks hold (exit status 1 otherwise).

Run:
  python benchmarks/mm_grpo_step.py                    # CPU
  python benchmarks/mm_grpo_step.py --device cuda      # GPU (the tiny model in fp32)
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

for _name, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                      "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_name, _value)

sys.path.insert(0, str(ROOT / "benchmarks"))
from sdl_overhead import REQUESTS, reward, variants  # noqa: E402  (same scripted group and reward)


def _user_image(colour: tuple[int, int, int]) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def run(kind: str, opts: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
    from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer
    from genevolve_graph.testing.tiny_vlm import build_tiny_vlm, build_tiny_vlm_processor
    from genevolve_graph.tools.local_images import DEFAULT_IMAGE_DIR
    from genevolve_graph.experience.buffer import ExperienceBuffer
    from genevolve_graph.experience.embedders import SentenceEmbedder
    from genevolve_graph.experience.guides import DecisionGuide
    from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt
    from genevolve_graph.training.trainer import SDLConfig, SDLGRPOTrainer

    torch.manual_seed(0)
    cuda = opts.device.startswith("cuda")
    processor = build_tiny_vlm_processor()
    model = build_tiny_vlm(processor)
    if cuda:
        model = model.to(opts.device)
    ctx = AgentContext(renderer="none", max_tokens=512, image_dir=str(DEFAULT_IMAGE_DIR),
                       options={"show_images": True, "thumbnail_max_side": 64})
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]
    dataset = Dataset.from_list([{"prompt": request_prompt(r, ctx, [_user_image(c)])} for r, c in zip(REQUESTS, colours)])
    script = ScriptedPolicyScript(processor.tokenizer, {r: variants(r) for r in REQUESTS})
    rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
    args = SDLConfig(
        output_dir=tempfile.mkdtemp(prefix=f"mm-grpo-{kind}-"), per_device_train_batch_size=opts.group, num_generations=opts.group,
        max_completion_length=4096, max_steps=opts.warmup + opts.steps, learning_rate=1e-3, logging_steps=1, report_to="none",
        save_strategy="no", dataloader_num_workers=0, use_cpu=not cuda, bf16=False, seed=0, shuffle_dataset=False,
        sdl_coef=0.1 if kind == "sdl" else 0.0, gate=0.84,
    )
    buffer = None
    if kind == "sdl":
        buffer = ExperienceBuffer(SentenceEmbedder(build_tiny_sentence_transformer("static"), name="tiny-static"), gate=args.gate)
        buffer.add([DecisionGuide.model_validate({
            "retrieval_key": {"trigger": r, "summary": r},
            "decision_guidance": {"tool_plan": ["Search the subject's facts first, then fetch one reference image"]},
        }) for r in REQUESTS])

    forwards: list[bool] = []

    class Checked(SDLGRPOTrainer):
        def _get_per_token_logps_and_entropies(self, model, input_ids, *a, **kw):
            forwards.append(kw.get("pixel_values") is not None or bool(self._rollout_mm))
            return super()._get_per_token_logps_and_entropies(model, input_ids, *a, **kw)

    trainer = Checked(model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=processor,
                      rollout_func=rollout, experience_buffer=buffer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
                if state.global_step == opts.warmup:
                    torch.cuda.reset_peak_memory_stats()
            self.start = time.perf_counter()

        def on_step_end(self, a, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    trainer.add_callback(Timer())
    trainer.train()
    rollout.close()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    images = [len(r.images) for r in rollout.last_results]
    measured = times[opts.warmup:] or times
    result = {
        "kind": kind,
        "device": opts.device,
        "step_s": round(sum(measured) / len(measured), 4),
        "steps": len(measured),
        "images_per_rollout": images,
        "forwards": len(forwards),
        "every_forward_saw_pixels": bool(forwards) and all(forwards),
        "changed_tensors": len(changed),
        "vision_tower_changed": any(n.startswith("model.visual.") for n in changed),
        "language_model_changed": any(n.startswith("model.language_model.") for n in changed),
    }
    if kind == "sdl":
        logs = [r for r in trainer.state.log_history if "sdl/loss" in r]
        result["sdl_active_rows"] = sum(r.get("sdl/active_rows", 0) for r in logs)
    if cuda:
        result["peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    result["ok"] = (result["every_forward_saw_pixels"] and result["vision_tower_changed"] and result["language_model_changed"]
                    and min(images) >= 1 and max(images) >= 2 and (kind != "sdl" or result["sdl_active_rows"] > 0))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--group", type=int, default=6, help="rollouts per group (= per-device batch)")
    parser.add_argument("--steps", type=int, default=2, help="measured optimizer steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--kinds", default="grpo,sdl", help="comma-separated: grpo, sdl")
    opts = parser.parse_args()
    ok = True
    for kind in opts.kinds.split(","):
        result = run(kind.strip(), opts)
        print(json.dumps(result), flush=True)
        ok = ok and result["ok"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
