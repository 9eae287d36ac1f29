"""Resume check (issue 23 item 2) on any device: train two SDL steps with a checkpoint per step,
then resume from checkpoint-1 and check that only step 2 runs again, from the optimizer and RNG
state TRL saved, with the experience buffer as it was at step 1 (not the buffer folder's newest).

No judge or endpoint: scripted tool-using rollouts (``sdl_overhead.py``'s), its in-process reward,
and an in-process distiller that writes one guide per distilled group. Prints one JSON line and
exits 1 when a check fails.

Run:
  python benchmarks/resume_check.py                 # CPU
  python benchmarks/resume_check.py --device cuda   # GPU (the tiny model)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

for _name, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                      "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_name, _value)

from sdl_overhead import REQUESTS, reward, variants  # noqa: E402  (same scripted group and reward)


class CountingDistiller:
    """Writes one guide per distilled pair (in process, no endpoint)."""

    def __init__(self) -> None:
        self.calls = 0

    async def distill(self, request, best, worst, *, step=0, ground_truth=None):
        from genevolve_graph.experience.guides import DecisionGuide

        self.calls += 1
        return DecisionGuide.model_validate({
            "retrieval_key": {"trigger": request, "summary": request},
            "decision_guidance": {"tool_plan": [f"Search the facts first (guide {self.calls}, step {step})"]},
        })


def run(out: Path, device: str, max_steps: int, resume: str | None) -> dict:
    import torch
    from datasets import Dataset

    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.experience.buffer import ExperienceBuffer
    from genevolve_graph.experience.embedders import SentenceEmbedder
    from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
    from genevolve_graph.testing.tiny_models import build_tiny_causal_lm, build_tiny_sentence_transformer, build_tiny_tokenizer
    from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt
    from genevolve_graph.training.trainer import SDLConfig, SDLGRPOTrainer

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_causal_lm(tokenizer)
    ctx = AgentContext(renderer="none", max_tokens=512)
    requests = REQUESTS[:2]
    script = ScriptedPolicyScript(tokenizer, {r: variants(r) for r in requests})
    rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
    args = SDLConfig(output_dir=str(out / "run"), per_device_train_batch_size=6, num_generations=6, max_completion_length=1024,
                     max_steps=max_steps, learning_rate=1e-3, logging_steps=1, report_to="none", save_strategy="steps", save_steps=1,
                     dataloader_num_workers=0, use_cpu=device == "cpu", bf16=False, seed=0, shuffle_dataset=False,
                     sdl_coef=0.1, gate=0.5, delta_min=0.1, buffer_dir=str(out / "buffer"))
    embedder = SentenceEmbedder(build_tiny_sentence_transformer("static"), name="tiny-static")
    distiller = CountingDistiller()
    trainer = SDLGRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=Dataset.from_list([{"prompt": request_prompt(r, ctx)} for r in requests]),
                             processing_class=tokenizer, rollout_func=rollout, distiller=distiller,
                             experience_buffer=ExperienceBuffer(embedder, gate=args.gate, path=args.buffer_dir))
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        rollout.close()
    history = trainer.state.log_history
    return {"global_step": trainer.state.global_step, "distiller_calls": distiller.calls,
            "loss_steps": [h["step"] for h in history if "loss" in h],
            "buffer_sizes": [h["sdl/buffer_size"] for h in history if "sdl/buffer_size" in h],
            "buffer_after": len(trainer.experience_buffer)}


def guides(folder: Path) -> int:
    file = folder / "guides.jsonl"
    return sum(1 for line in file.read_text().splitlines() if line.strip()) if file.is_file() else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    opts = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="resume-check-"))
    first = run(out, opts.device, 2, None)
    one, two = out / "run" / "checkpoint-1", out / "run" / "checkpoint-2"
    saved = {"checkpoint-1": guides(one / "experience_buffer"), "checkpoint-2": guides(two / "experience_buffer")}
    resumed = run(out, opts.device, 2, str(one))
    checks = {
        "first run trained 2 steps": first["global_step"] == 2 and first["loss_steps"] == [1, 2],
        "each checkpoint holds the optimizer and RNG state": all((c / f).is_file() for c in (one, two) for f in ("optimizer.pt", "scheduler.pt", "rng_state.pth")),
        "each checkpoint holds the buffer of its step": saved == {"checkpoint-1": 1, "checkpoint-2": 2},
        "the resumed run trained step 2 only": resumed["global_step"] == 2 and resumed["distiller_calls"] == 1,
        "step 2 started from checkpoint-1's buffer": resumed["buffer_sizes"][-1:] == [2.0] and resumed["buffer_after"] == 2,
    }
    ok = all(checks.values())
    print(json.dumps({"device": opts.device, "first": first, "saved_guides": saved, "resumed": resumed, "checks": checks, "ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
