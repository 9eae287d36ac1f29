"""Resuming GRPO + SDL from a checkpoint (issue 23 item 2): TRL's semantics (step, optimizer,
RNG) and the experience buffer as it was at that step. Real SDLGRPOTrainer steps on the tiny
Qwen3 with scripted rollouts and the judges and distiller behind an HTTP server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset

from genevolve_graph.evaluation.judge_client import JudgeClient
from genevolve_graph.experience.buffer import ExperienceBuffer
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.generators.preview import PreviewRenderer
from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
from genevolve_graph.testing.tiny_models import build_tiny_causal_lm
from genevolve_graph.training.checkpoints import CheckpointError, resolve_checkpoint
from genevolve_graph.training.distill import GuideDistiller
from genevolve_graph.training.rewards import GenEvolveRewards
from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt
from genevolve_graph.training.trainer import SDLGRPOTrainer

from .helpers import DATA, FOX, TOWER, fox_good, fox_poor, fox_skill, make_context, tiny_sdl_config, tower_replies
from .judges import JudgeScript, judge_server


def _run(tmp: Path, tokenizer, embedder, *, max_steps: int, resume: str | None = None) -> tuple[SDLGRPOTrainer, JudgeScript]:
    ctx = make_context(tmp / "agent")
    gt = str(DATA / "images" / "cat.png")
    script = ScriptedPolicyScript(tokenizer, {"red fox": [fox_good(), fox_poor(), fox_skill()], "Eiffel": tower_replies()})
    judge = JudgeScript()
    with judge_server(judge) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        rewards = GenEvolveRewards(renderer=PreviewRenderer(), image_judge=client, text_judge=client, image_dir=tmp / "renders")
        args = tiny_sdl_config(
            tmp / "out", max_steps=max_steps, save_strategy="steps", save_steps=1, reward_weights=[0.5, 0.5], sdl_coef=1.0,
            gate=0.5, delta_min=0.2, buffer_dir=str(tmp / "buffer"),
        )
        buffer = ExperienceBuffer(SentenceEmbedder(embedder, name="tiny"), gate=args.gate, path=args.buffer_dir)
        rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
        dataset = Dataset.from_list([{"prompt": request_prompt(FOX, ctx), "gt_image": gt}, {"prompt": request_prompt(TOWER, ctx), "gt_image": gt}])
        trainer = SDLGRPOTrainer(model=build_tiny_causal_lm(tokenizer), reward_funcs=rewards.reward_funcs(), args=args, train_dataset=dataset,
                                 processing_class=tokenizer, rollout_func=rollout, experience_buffer=buffer, distiller=GuideDistiller(client))
        try:
            trainer.train(resume_from_checkpoint=resume)
        finally:
            rollout.close()
    return trainer, judge


def _guides(folder: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (folder / "guides.jsonl").read_text().splitlines() if line.strip()]


def test_resume_restores_step_optimizer_and_the_buffer_of_that_step(tmp_path, tiny_tokenizer, tiny_embedder):
    first, judge = _run(tmp_path, tiny_tokenizer, tiny_embedder, max_steps=2)
    out = tmp_path / "out"
    assert first.state.global_step == 2 and judge.calls["distiller"] == 2  # one guide per step (fox, then tower)
    one, two = out / "checkpoint-1", out / "checkpoint-2"
    assert (one / "optimizer.pt").is_file() and (one / "rng_state.pth").is_file()
    # each checkpoint holds the buffer as it was at its step
    assert len(_guides(one / "experience_buffer")) == 1 and len(_guides(two / "experience_buffer")) == 2
    assert _guides(tmp_path / "buffer") == _guides(two / "experience_buffer")  # the folder's newest state

    resumed, judge = _run(tmp_path, tiny_tokenizer, tiny_embedder, max_steps=2, resume=str(one))
    # one step ran (step 2), not two from step 0
    assert resumed.state.global_step == 2
    steps = [rec["step"] for rec in resumed.state.log_history if "loss" in rec]
    assert steps == [1, 2]  # step 1's record comes from the checkpoint's trainer state
    assert judge.calls["distiller"] == 1 and judge.calls["kscore"] == 3
    # step 2 started from checkpoint-1's buffer (1 guide) and added the tower guide: 2, not 3
    sizes = [rec["sdl/buffer_size"] for rec in resumed.state.log_history if "sdl/buffer_size" in rec]
    assert sizes == [1.0, 2.0]
    assert _guides(tmp_path / "buffer")[0] == _guides(one / "experience_buffer")[0] and len(_guides(tmp_path / "buffer")) == 2


def test_checkpoint_values_are_resolved_with_one_line_errors(tmp_path):
    assert resolve_checkpoint(None, tmp_path) is None and resolve_checkpoint("false", tmp_path) is None
    with pytest.raises(CheckpointError, match="no such folder"):
        resolve_checkpoint(str(tmp_path / "checkpoint-7"), tmp_path)
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        resolve_checkpoint(str(tmp_path / "checkpoint-3"), tmp_path)
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-12").mkdir()
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text("{}")
    assert resolve_checkpoint(str(tmp_path / "checkpoint-3"), tmp_path) == str(tmp_path / "checkpoint-3")
    assert resolve_checkpoint("last", tmp_path) == str(tmp_path / "checkpoint-12")
    with pytest.raises(CheckpointError, match="no checkpoint-N folder"):
        resolve_checkpoint(True, tmp_path / "empty")
