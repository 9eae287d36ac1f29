"""One process of the two-process SDL run in test_distributed.py (launched by torchrun).

Global batch: the fox group on rank 0, the tower group on rank 1. The scripted distiller writes
fox guides only, so rank 1 retrieves nothing above the gate and must run the dummy teacher
forward while rank 0 runs its own. Each rank writes OUT/rank-N.json.

Rank 0 also takes ``PUSH_SECONDS`` longer to reach the rollouts, as when it alone pushes new
weights to a vLLM server before each rollout; both ranks record when that push ended and when
they first sampled, so the test can check that nobody samples before the push ends.

MODE ``distill-fails``: rank 0's buffer folder lies under a regular file, so saving the first
guides fails on rank 0 only; every rank writes the error it stopped with to OUT/rank-N-error.txt.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

for _name, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                      "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_name, _value)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402

from genevolve_graph.evaluation.judge_client import JudgeClient  # noqa: E402
from genevolve_graph.generators.preview import PreviewRenderer  # noqa: E402
from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator  # noqa: E402
from genevolve_graph.testing.tiny_models import build_tiny_causal_lm, build_tiny_sentence_transformer, build_tiny_tokenizer  # noqa: E402
from genevolve_graph.experience.buffer import ExperienceBuffer  # noqa: E402
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.training.distill import GuideDistiller  # noqa: E402
from genevolve_graph.training.rewards import GenEvolveRewards  # noqa: E402
from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt  # noqa: E402
from genevolve_graph.training.trainer import SDLConfig, SDLGRPOTrainer  # noqa: E402
from tests.training.helpers import DATA, FOX, TOWER, fox_good, fox_poor, fox_skill, make_context, tower_replies  # noqa: E402
from tests.training.judges import JudgeScript, judge_server  # noqa: E402


PUSH_SECONDS = 1.5


class TimedGenerator(ScriptedTokenGenerator):
    """Scripted replies, recording when each one was asked for."""

    def __init__(self, script) -> None:
        super().__init__(script)
        self.times: list[float] = []

    async def generate(self, prompt_ids, max_new_tokens):
        self.times.append(time.time())
        return await super().generate(prompt_ids, max_new_tokens)


class SlowPushTrainer(SDLGRPOTrainer):
    """Rank 0 spends PUSH_SECONDS in ``_generate`` before rolling out (TRL pushes the weights to a
    vLLM server there, from the main process alone); every rank records when that ended."""

    push_done: list[float]
    generation_started: list[float]

    def _generate(self, prompts):
        self.generation_started.append(time.time())
        if self.accelerator.is_main_process:
            time.sleep(PUSH_SECONDS)
        self.push_done.append(time.time())
        return super()._generate(prompts)


def main(out: Path, mode: str) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_causal_lm(tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ctx = make_context(out / f"agent-{rank}")
    gt = str(DATA / "images" / "cat.png")
    dataset = Dataset.from_list([{"prompt": request_prompt(FOX, ctx), "gt_image": gt}, {"prompt": request_prompt(TOWER, ctx), "gt_image": gt}])
    script = ScriptedPolicyScript(tokenizer, {"red fox": [fox_good(), fox_poor(), fox_skill()], "Eiffel": tower_replies()})
    judge = JudgeScript(guide_trigger="a red fox in snow", guide_summary=FOX)
    with judge_server(judge) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        rewards = GenEvolveRewards(renderer=PreviewRenderer(), image_judge=client, text_judge=client, image_dir=out / f"renders-{rank}")
        args = SDLConfig(
            output_dir=str(out / "run"), per_device_train_batch_size=3, num_generations=3, max_completion_length=1024, max_steps=2,
            learning_rate=1e-2, logging_steps=1, report_to="none", use_cpu=True, bf16=False, save_strategy="no",
            dataloader_num_workers=0, reward_weights=[0.5, 0.5], shuffle_dataset=False, seed=0, sdl_coef=1.0, gate=0.84,
        )
        buffer_dir = out / "buffer"
        if mode == "distill-fails":
            (out / "not-a-folder").write_text("a file where the buffer folder should be\n")
            buffer_dir = out / "not-a-folder" / "buffer"
        buffer = ExperienceBuffer(SentenceEmbedder(build_tiny_sentence_transformer("static"), name="tiny"), gate=args.gate,
                                  path=buffer_dir if rank == 0 else None)
        generator = TimedGenerator(script)
        rollout = GenEvolveRollout(ctx, generator=generator)
        trainer = SlowPushTrainer(model=model, reward_funcs=rewards.reward_funcs(), args=args, train_dataset=dataset,
                                 processing_class=tokenizer, rollout_func=rollout, experience_buffer=buffer,
                                 distiller=GuideDistiller(client))
        trainer.push_done, trainer.generation_started = [], []
        try:
            trainer.train()
        except Exception as exc:
            (out / f"rank-{rank}-error.txt").write_text(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            raise
        finally:
            rollout.close()
    logs = [r for r in trainer.state.log_history if "sdl/guide_hit_rate" in r]
    (out / f"rank-{rank}.json").write_text(json.dumps({
        "rank": rank,
        "world": trainer.accelerator.num_processes,
        "steps": trainer.state.global_step,
        "guides": [g.id for g in buffer.guides],
        "distiller_calls": judge.calls["distiller"],
        "hit_rate": [r["sdl/guide_hit_rate"] for r in logs],
        "active_rows": [r["sdl/active_rows"] for r in logs],
        "push_done": trainer.push_done,
        "generation_started": trainer.generation_started,
        "first_sample": [min(t for t in generator.times if t >= start) for start in trainer.generation_started],
        "changed": sum(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters()),
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "ok")
