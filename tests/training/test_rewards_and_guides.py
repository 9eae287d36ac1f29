"""The reward functions and the distiller against judges served on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from genevolve_graph.evaluation.judge_client import JudgeClient
from genevolve_graph.generators.preview import PreviewRenderer
from genevolve_graph.state import Program, RenderResult
from genevolve_graph.training.buffer import ExperienceBuffer, SentenceEmbedder
from genevolve_graph.training.guides import Attempt, GuideDistiller, GuideError
from genevolve_graph.training.rewards import GenEvolveRewards

from .helpers import DATA, FOX
from .judges import JudgeScript, judge_server

GT = DATA / "images" / "cat.png"
GOOD = {"gen_prompt": "A red fox asleep in snow, posed like the first reference image",
        "reference_images": [{"img_id": "IMG_001", "title": "fox", "local_path": str(GT), "note": "pose"}]}
BARE = {"gen_prompt": "a fox", "reference_images": []}


class BrokenRenderer:
    name = "broken"

    async def render(self, program: Program, out_path: Path, *, seed: int = 0) -> RenderResult:
        return RenderResult(success=False, backend=self.name, error="the render service is down")


def _call(func, n, **columns):
    prompts = [[{"role": "system", "content": "s"}, {"role": "user", "content": FOX}]] * n
    metrics: dict[str, float] = {}
    scores = asyncio.run(func(prompts=prompts, completions=[[{"role": "assistant", "content": ""}]] * n,
                              log_metric=lambda k, v: metrics.__setitem__(k, v), **columns))
    return scores, metrics


def test_rewards_score_programs_and_never_hide_failures(tmp_path):
    judge = JudgeScript()
    with judge_server(judge) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        rewards = GenEvolveRewards(renderer=PreviewRenderer(), image_judge=client, text_judge=client, image_dir=tmp_path)
        columns = {
            "program": [GOOD, BARE, None, GOOD, GOOD],
            "rollout_failed": [False, False, False, True, False],
            "gt_image": [str(GT), str(GT), str(GT), str(GT), str(tmp_path / "missing.png")],
        }
        image, image_metrics = _call(rewards.image_reward, 5, **columns)
        text, _ = _call(rewards.program_reward, 5, **columns)

        # KScore 0.1·1 + 0.4·0.5 + 0.4·0.5 (text n/a) + 0.1·1 = 0.6; no program: the policy's 0; failures: None
        assert image[:4] == [pytest.approx(0.6), pytest.approx(0.6), 0.0, None]
        assert image[4] is None and image_metrics["rewards/image_judge_failures"] == 1.0  # unreadable ground truth
        assert text == [1.0, 0.0, 0.0, None, None]  # the sufficiency judge was shown the (missing) ground truth too
        assert len(list(tmp_path.rglob("*.png"))) == 3  # rendered for rollouts 0, 1 and 4

        broken = GenEvolveRewards(renderer=BrokenRenderer(), image_judge=client, text_judge=client, image_dir=tmp_path)
        scores, metrics = _call(broken.image_reward, 1, program=[GOOD], gt_image=[str(GT)])
        assert scores == [None] and metrics["rewards/image_render_failures"] == 1.0

    garbage = JudgeScript(kscore="I would rather not grade this.")
    with judge_server(garbage) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        rewards = GenEvolveRewards(renderer=PreviewRenderer(), image_judge=client, text_judge=client, image_dir=tmp_path)
        scores, metrics = _call(rewards.image_reward, 1, program=[GOOD], gt_image=[str(GT)])
        assert scores == [None] and metrics["rewards/image_judge_failures"] == 1.0


def test_guide_is_distilled_stored_retrieved_above_the_gate_and_ignored_below(tmp_path, tiny_embedder):
    judge = JudgeScript(guide_trigger="a red fox in snow", guide_summary=FOX)
    best = Attempt(reward=0.9, components={"image_reward": 0.8, "program_reward": 1.0}, program=GOOD, termination="answer",
                   messages=[{"role": "assistant", "content": "<tool_call>{...}</tool_call>"},
                             {"role": "user", "content": "<tool_response>\nfox facts\n</tool_response>"}])
    worst = Attempt(reward=0.1, components={"image_reward": 0.2, "program_reward": 0.0}, program=BARE, termination="answer",
                    messages=[{"role": "assistant", "content": "<answer>{}</answer>"}])
    with judge_server(judge) as server:
        distiller = GuideDistiller(JudgeClient(server.base_url, "scripted-judge", max_retries=0))
        guide = asyncio.run(distiller.distill(FOX, best, worst, step=7))
    assert guide.step == 7 and guide.reward_best == 0.9 and guide.source_request == FOX
    assert "reward parts: image_reward 0.800, program_reward 1.000" in judge.distiller_prompts[0]

    embedder = SentenceEmbedder(tiny_embedder, name="tiny")
    buffer = ExperienceBuffer(embedder, gate=0.84, path=tmp_path / "buffer")
    buffer.add(guide)
    buffer.save()
    reloaded = ExperienceBuffer.load(tmp_path / "buffer", embedder, gate=0.84)
    above = reloaded.retrieve([FOX])[0]
    assert above is not None and above.guide.id == guide.id and above.score >= 0.84
    unrelated = "A poster for a jazz night with neon letters"
    assert reloaded.search([unrelated])[0].score < 0.84
    assert reloaded.retrieve([unrelated]) == [None]


def test_distiller_failures_are_guide_errors():
    class Refusing:
        async def complete(self, messages):
            return "no JSON here"

    with pytest.raises(GuideError, match="not valid JSON"):
        asyncio.run(GuideDistiller(Refusing()).distill(FOX, Attempt(1.0, []), Attempt(0.0, [])))
    dead = GuideDistiller(JudgeClient("http://127.0.0.1:9/v1", "nobody", max_retries=0, timeout=2))
    with pytest.raises(GuideError, match="endpoint failed"):
        asyncio.run(dead.distill(FOX, Attempt(1.0, []), Attempt(0.0, [])))
