"""Infrastructure failures during GRPO are excluded and counted, never scored (issue 13, items 1-2).

Real SDLGRPOTrainer steps on the tiny Qwen3, scripted rollouts through the agent graph, judges
and the distiller behind an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

from genevolve_graph.evaluation.judge_client import JudgeClient
from genevolve_graph.generators.preview import PreviewRenderer
from genevolve_graph.core.state import Program, RenderResult
from genevolve_graph.testing.scripted_generation import (
    ScriptedCompletionsServer,
    ScriptedPolicyScript,
    ScriptedTokenGenerator,
)
from genevolve_graph.testing.tiny_models import build_tiny_causal_lm
from genevolve_graph.experience.buffer import ExperienceBuffer
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.training.generation import CompletionsGenerator
from genevolve_graph.training.distill import GuideDistiller
from genevolve_graph.training.rewards import GenEvolveRewards
from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt
from genevolve_graph.training.trainer import SDLGRPOTrainer

from .helpers import DATA, FOX, fox_good, fox_poor, fox_skill, make_context, tiny_sdl_config
from .judges import JudgeScript, judge_server


class RenderOutage:
    """The preview renderer, except that it reports a failed render for programs whose prompt
    contains ``phrase`` (a render backend that is down for one request)."""

    name = "preview-with-outage"

    def __init__(self, phrase: str) -> None:
        self.inner = PreviewRenderer()
        self.phrase = phrase
        self.failed = 0

    async def render(self, program: Program, out_path: Path, *, seed: int = 0) -> RenderResult:
        if self.phrase in program.gen_prompt:
            self.failed += 1
            return RenderResult(success=False, error="render service answered 503", backend=self.name)
        return await self.inner.render(program, out_path, seed=seed)


def _one_fox_step(tmp: Path, tokenizer, embedder, *, renderer: Any, rollout: GenEvolveRollout, judge: JudgeScript,
                  trainer_cls: type[SDLGRPOTrainer] = SDLGRPOTrainer) -> SDLGRPOTrainer:
    ctx = rollout.ctx
    model = build_tiny_causal_lm(tokenizer)
    with judge_server(judge) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        rewards = GenEvolveRewards(renderer=renderer, image_judge=client, text_judge=client, image_dir=tmp / "renders")
        args = tiny_sdl_config(
            tmp / "out", max_steps=1, reward_weights=[0.5, 0.5], sdl_coef=1.0, gate=0.5, delta_min=0.2, buffer_dir=str(tmp / "buffer"),
        )
        buffer = ExperienceBuffer(SentenceEmbedder(embedder, name="tiny"), gate=args.gate, path=args.buffer_dir)
        dataset = Dataset.from_list([{"prompt": request_prompt(FOX, ctx), "gt_image": str(DATA / "images" / "cat.png")}])
        trainer = trainer_cls(
            model=model, reward_funcs=rewards.reward_funcs(), args=args, train_dataset=dataset,
            processing_class=tokenizer, rollout_func=rollout, experience_buffer=buffer, distiller=GuideDistiller(client),
        )
        try:
            trainer.train()
        finally:
            rollout.close()
    return trainer


def _logged(trainer: SDLGRPOTrainer, key: str) -> list[float]:
    return [float(rec[key]) for rec in trainer.state.log_history if key in rec]


def test_a_partial_reward_failure_is_excluded_from_advantage_and_pair_selection(tmp_path, tiny_tokenizer, tiny_embedder):
    """Issue 13 item 1: the render of one rollout fails, its R_text still scores.

    Before the fix its reward was 0.5 * R_text alone (0.25 here), the lowest of its group, with
    the most negative advantage, and SDL distilled a guide with it as the "worse attempt".
    """
    script = ScriptedPolicyScript(tiny_tokenizer, {"red fox": [fox_good(), fox_poor(), fox_skill()]})
    renderer = RenderOutage("seen from above")  # fox_skill's answer
    judge = JudgeScript()
    rollout = GenEvolveRollout(make_context(tmp_path / "agent"), generator=ScriptedTokenGenerator(script))
    trainer = _one_fox_step(tmp_path, tiny_tokenizer, tiny_embedder, renderer=renderer, rollout=rollout, judge=judge)

    assert renderer.failed == 1
    assert judge.calls["sufficiency"] == 3  # the text half of the failed rollout was still judged...
    completions = [c[0]["content"] for c in trainer._logs["completion"]]
    advantages = list(trainer._logs["advantages"])
    failed = next(i for i, text in enumerate(completions) if "seen from above" in text)
    assert advantages[failed] == 0.0  # ...but the rollout carries no learning signal
    for name in ("image_reward", "program_reward"):
        assert math.isnan(trainer._logs["rewards"][name][failed])
    # the two scored rollouts (R = 0.8 and 0.3) are normalised against each other alone
    scored = sorted(a for i, a in enumerate(advantages) if i != failed)
    assert scored[0] < 0 < scored[1] and abs(scored[0] + scored[1]) < 1e-4
    assert _logged(trainer, "reward/failed_share") == pytest.approx([1 / 3])
    # the logged mean reward is that of the scored rollouts only: (0.8 + 0.3) / 2
    assert abs(_logged(trainer, "reward")[0] - 0.55) < 1e-6
    # the distilled pair is best (0.80) against the policy's real worst (0.30), not the failure
    assert judge.calls["distiller"] == 1
    prompt = judge.distiller_prompts[0]
    assert "Worse attempt: reward 0.300" in prompt and "seen from above" not in prompt


def test_a_first_turn_outage_costs_one_rollout_not_the_step(tmp_path, tiny_tokenizer, tiny_embedder):
    """Issue 13 item 2: the completions endpoint answers 503 to one rollout's first turn.

    Before the fix that rollout returned ``completion_ids == []`` and TRL's ``ids[-1]`` raised
    IndexError, ending the run.
    """
    script = ScriptedPolicyScript(tiny_tokenizer, {"red fox": [fox_good(), fox_poor()]})
    judge = JudgeScript()
    with ScriptedCompletionsServer(script, outages={"red fox": 1}) as policy_server:
        generator = CompletionsGenerator(policy_server.base_url, max_retries=0)
        rollout = GenEvolveRollout(make_context(tmp_path / "agent"), generator=generator)
        trainer = _one_fox_step(tmp_path, tiny_tokenizer, tiny_embedder, renderer=PreviewRenderer(), rollout=rollout, judge=judge)
    assert policy_server.outage_answers == 1
    assert trainer.state.global_step == 1  # the step completed
    results = rollout.last_results
    failed = [r for r in results if r.failed]
    assert len(failed) == 1 and "503" in (failed[0].error or "")
    placeholder = failed[0]
    assert placeholder.completion_ids == [tiny_tokenizer.eos_token_id] and placeholder.env_mask == [0]
    # no reward was asked for it; the two real rollouts were judged and trained on
    assert judge.calls["kscore"] == 2 and judge.calls["sufficiency"] == 2
    assert _logged(trainer, "reward/failed_share") == pytest.approx([1 / 3])
    assert _logged(trainer, "rollout/failed_rate") == pytest.approx([1 / 3])
    advantages = list(trainer._logs["advantages"])
    index = results.index(placeholder)
    assert advantages[index] == 0.0 and sorted(advantages)[0] < 0 < sorted(advantages)[-1]


class _ActiveRecorder(SDLGRPOTrainer):
    """Keeps, per generation batch, each row's completion text and its ``sdl_active`` flag."""

    seen: list[tuple[str, int]]

    def _attach_teacher(self, inputs, output):
        super()._attach_teacher(inputs, output)
        texts = self._tokenizer.batch_decode(output["completion_ids"], skip_special_tokens=True)
        type(self).seen = list(zip(texts, output["sdl_active"].tolist(), strict=True))


def test_a_failed_rollout_gets_no_sdl_teacher_term_and_is_counted(tmp_path, tiny_tokenizer, tiny_embedder):
    """Issue 23 item 5: the render of one rollout fails (an infrastructure failure). Before the fix
    its advantage was 0 and it made no pair, but it still had ``sdl_active = 1`` with all its
    decision tokens, so the teacher term trained on it. Now it is excluded and counted."""
    script = ScriptedPolicyScript(tiny_tokenizer, {"red fox": [fox_good(), fox_poor(), fox_skill()]})
    renderer = RenderOutage("seen from above")  # fox_skill's answer
    rollout = GenEvolveRollout(make_context(tmp_path / "agent"), generator=ScriptedTokenGenerator(script))
    trainer = _one_fox_step(tmp_path, tiny_tokenizer, tiny_embedder, renderer=renderer, rollout=rollout, judge=JudgeScript(),
                            trainer_cls=_ActiveRecorder)
    assert renderer.failed == 1
    seen = _ActiveRecorder.seen
    failed = [active for text, active in seen if "seen from above" in text]
    scored = [active for text, active in seen if "seen from above" not in text]
    assert failed == [0]  # the guide distilled this step applies to the request, but not to the failed rollout
    assert scored == [1, 1]
    assert _logged(trainer, "sdl/failed_rows_excluded") == [1.0]
    assert _logged(trainer, "sdl/guide_hit_rate") == [1.0]  # the guide was found for every row; the failure was excluded after
