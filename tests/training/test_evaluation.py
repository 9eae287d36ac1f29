"""Held-out KScore evaluation every N steps during GRPO (issue 13 item 11): real SDL-GRPO steps
on the tiny Qwen3, scripted rollouts, the preview renderer and the scripted KScore judge."""

from __future__ import annotations

import math

import pytest
from datasets import Dataset

from genevolve_graph.evaluation.judge_client import JudgeClient
from genevolve_graph.generators.preview import PreviewRenderer
from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
from genevolve_graph.testing.tiny_models import build_tiny_causal_lm
from genevolve_graph.experience.buffer import ExperienceBuffer
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.training.evaluation import KScoreEvalCallback
from genevolve_graph.training.rewards import GenEvolveRewards
from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt
from genevolve_graph.training.trainer import SDLGRPOTrainer

from .helpers import DATA, FOX, TOWER, fox_good, fox_poor, fox_skill, make_context, tiny_sdl_config, tower_replies
from .judges import JudgeScript, judge_server


def test_kscore_is_evaluated_on_held_out_prompts_every_n_steps(tmp_path, tiny_tokenizer, tiny_embedder):
    ctx = make_context(tmp_path / "agent")
    gt = str(DATA / "images" / "cat.png")
    script = ScriptedPolicyScript(tiny_tokenizer, {"red fox": [fox_good(), fox_poor(), fox_skill()], "Eiffel": tower_replies()})
    judge = JudgeScript()
    train = Dataset.from_list([{"prompt": request_prompt(FOX, ctx), "gt_image": gt}])
    # two held-out rows: one scorable, one whose ground truth is missing (not scorable: excluded, not 0)
    held_out = Dataset.from_list([{"prompt": request_prompt(TOWER, ctx), "gt_image": gt}, {"prompt": request_prompt(TOWER, ctx), "gt_image": ""}])
    with judge_server(judge) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        rewards = GenEvolveRewards(renderer=PreviewRenderer(), image_judge=client, text_judge=client, image_dir=tmp_path / "renders")
        args = tiny_sdl_config(
            tmp_path / "out", max_steps=2, reward_weights=[0.5, 0.5], sdl_coef=0.0,
        )
        rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
        callback = KScoreEvalCallback(held_out, rollout=rollout, rewards=rewards, every=1)
        trainer = SDLGRPOTrainer(model=build_tiny_causal_lm(tiny_tokenizer), reward_funcs=rewards.reward_funcs(), args=args,
                                 train_dataset=train, processing_class=tiny_tokenizer, rollout_func=rollout,
                                 experience_buffer=ExperienceBuffer(SentenceEmbedder(tiny_embedder, name="tiny")), callbacks=[callback])
        callback.bind(trainer)
        try:
            trainer.train()
        finally:
            rollout.close()
    logged = [rec for rec in trainer.state.log_history if "eval/kscore" in rec]
    assert [rec["step"] for rec in logged] == [1, 2]
    for rec in logged:
        assert rec["eval/kscore"] == pytest.approx(0.6)  # the scripted judge: 0.1 F + 0.4 V + 0.4 T + 0.1 A with V = T = 0.5
        assert rec["eval/kscore_failed_share"] == 0.5 and rec["eval/kscore_rollouts"] == 2.0
        assert rec["eval_rollout/answer_rate"] == 1.0  # the held-out rollouts' own metrics, apart from training's
    # training rollouts (3 per step) and held-out rollouts (2 per evaluation, one without ground truth)
    assert judge.calls["kscore"] == 3 * 2 + 1 * 2
    train_logs = [rec for rec in trainer.state.log_history if "rollout/answer_rate" in rec]
    assert len(train_logs) == 2 and all(not math.isnan(rec["reward"]) for rec in train_logs)
