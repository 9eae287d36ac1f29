"""The reward functions and the distiller against judges served on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from genevolve_graph.evaluation.judge_client import JudgeClient
from genevolve_graph.generators.preview import PreviewRenderer
from genevolve_graph.core.state import Program, RenderResult
from genevolve_graph.experience.buffer import ExperienceBuffer
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.training.distill import Attempt, GuideDistiller, GuideError, VisualGuideDistiller, make_distiller
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
        # the ledger finds each render by request and program (for the visual distiller)
        good_render, bare_render = rewards.render_of(FOX, GOOD), rewards.render_of(FOX, BARE)
        assert good_render and bare_render and good_render != bare_render and Path(good_render).is_file()
        assert rewards.render_of(FOX, None) is None and rewards.render_of("another request", GOOD) is None

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


def _decode(url: str):
    import base64
    import io

    from PIL import Image

    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def _mean_colour(image) -> tuple[float, ...]:
    from PIL import ImageStat

    return tuple(ImageStat.Stat(image.convert("RGB")).mean)


def test_visual_distiller_sends_both_renders_and_the_ground_truth(tmp_path):
    """The VLM distiller's request carries the ground truth, the better and the worse render as
    image_url data URIs in that order (checked pixel-wise); the text distiller sends none."""
    from PIL import Image

    paths = {}
    for name, colour in (("truth", (200, 30, 30)), ("better", (30, 200, 30)), ("worse", (30, 30, 200))):
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (2048, 1024), colour).save(paths[name])
    best = Attempt(reward=0.9, program=GOOD, image=str(paths["better"]), termination="answer",
                   messages=[{"role": "assistant", "content": "<answer>{}</answer>"}])
    worst = Attempt(reward=0.1, program=BARE, image=str(paths["worse"]), termination="answer",
                    messages=[{"role": "assistant", "content": "<answer>{}</answer>"}])
    judge = JudgeScript()
    with judge_server(judge) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        assert isinstance(make_distiller(client), VisualGuideDistiller)  # the default kind
        guide = asyncio.run(make_distiller(client, "vision").distill(FOX, best, worst, step=1, ground_truth=str(paths["truth"])))
        asyncio.run(make_distiller(client, "text").distill(FOX, best, worst, step=1, ground_truth=str(paths["truth"])))
        # a render that is gone and a pair without ground truth: the guide is still written, the text says so
        gone = Attempt(reward=0.1, messages=[], program=BARE, image=str(tmp_path / "deleted.png"))
        no_program = Attempt(reward=0.0, messages=[], program=None)
        asyncio.run(VisualGuideDistiller(client).distill(FOX, gone, no_program))
        body = server.successful_bodies()[0]
    assert guide.source_request == FOX and judge.calls["distiller"] == 3
    images = [_decode(url) for url in judge.distiller_images[0]]
    assert len(images) == 3 and all(max(im.size) == 1024 for im in images)  # capped long side
    for image, colour in zip(images, [(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        assert all(abs(a - b) < 4 for a, b in zip(_mean_colour(image), colour))
    parts = body["messages"][1]["content"]
    kinds = [p["type"] for p in parts]
    assert kinds == ["text", "text", "image_url", "text", "text", "image_url", "text", "text", "image_url"]
    assert parts[1]["text"].startswith("Ground-truth image") and "Better attempt: reward 0.900" in parts[3]["text"]
    assert parts[4]["text"] == "Better attempt's image:" and parts[7]["text"] == "Worse attempt's image:"
    assert judge.distiller_images[1] == []  # the text-only distiller: trajectories only
    assert "Image" not in judge.distiller_prompts[1].split("## Request", 1)[0]
    assert judge.distiller_images[2] == []
    assert "Better attempt's image: not available (the file could not be read)." in judge.distiller_prompts[2]
    assert "Worse attempt's image: none (the attempt wrote no program)." in judge.distiller_prompts[2]
    assert "Ground-truth" not in judge.distiller_prompts[2]
    with pytest.raises(ValueError, match="unknown distiller kind 'audio'"):
        make_distiller(client, "audio")
