"""judge_kscore and judge_program end to end against the scripted judge server."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from genevolve_graph.evaluation.images import ImageLoadError, image_data_url
from genevolve_graph.evaluation.judge_client import JudgeClient, JudgeError
from genevolve_graph.evaluation.kscore import KScore, judge_kscore
from genevolve_graph.evaluation.rubric import builtin_rubric
from genevolve_graph.evaluation.sufficiency import judge_program, program_text
from genevolve_graph.core.state import Program, Reference
from tests.evaluation.conftest import kscore_reply, make_image
from tests.evaluation.judge_server import ScriptedJudge, error, ok


def decode(url: str) -> Image.Image:
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


@pytest.fixture
def client(judge: ScriptedJudge) -> JudgeClient:
    return JudgeClient(judge.base_url, "judge-test", "k", max_retries=2, backoff_base=0.01, backoff_max=0.05)


async def test_kscore_sends_generated_then_ground_truth_as_jpeg_and_scores(judge: ScriptedJudge, client: JudgeClient, tmp_path: Path) -> None:
    gen = make_image(tmp_path / "gen.png", (40, 20), (250, 0, 0))
    gt = make_image(tmp_path / "gt.png", (30, 30), (0, 250, 0))
    judge.on("case-red-bus", ok("```json\n" + kscore_reply(1, 0.5, 1, 0.5) + "\n```"))
    score = await judge_kscore(client, prompt="case-red-bus: a red bus", generated=gen, ground_truth=gt)
    assert isinstance(score, KScore)
    assert score.overall == pytest.approx(0.1 + 0.4 * 0.5 + 0.4 * 1 + 0.1 * 0.5)
    assert score.rationale.startswith("Constraints:") and "```json" in score.raw
    (request,) = judge.requests_for("case-red-bus")
    assert request.body["temperature"] == 0
    assert request.body["messages"][0] == {"role": "system", "content": builtin_rubric("kscore")}
    first, second = (decode(u) for u in request.images())
    assert first.size == (40, 20) and first.getpixel((30, 10))[0] > 200  # Image 1 = generated (red)
    assert second.size == (30, 30) and second.getpixel((20, 20))[1] > 200  # Image 2 = ground truth (green)
    text = request.text
    assert text.index("Image 1") < text.index("Image 2")


async def test_custom_rubric_replaces_the_system_prompt(judge: ScriptedJudge, client: JudgeClient, tmp_path: Path) -> None:
    gen, gt = make_image(tmp_path / "g.png"), make_image(tmp_path / "t.png")
    judge.on("case-rubric", ok(kscore_reply(0, 0, 0, 0, na=True)))
    score = await judge_kscore(client, prompt="case-rubric", generated=gen, ground_truth=gt, rubric="My own rubric.")
    assert score.text_accuracy_na and score.overall == pytest.approx(0.2)
    assert judge.requests_for("case-rubric")[0].body["messages"][0]["content"] == "My own rubric."


async def test_malformed_reply_is_asked_again_then_judge_error(judge: ScriptedJudge, client: JudgeClient, tmp_path: Path) -> None:
    gen, gt = make_image(tmp_path / "g.png"), make_image(tmp_path / "t.png")
    judge.on("case-recover", ok("The image is nice."), ok(kscore_reply(1, 1, 1, 1)))
    assert (await judge_kscore(client, prompt="case-recover", generated=gen, ground_truth=gt)).overall == pytest.approx(1.0)
    judge.on("case-hopeless", ok("I refuse to produce JSON."))
    with pytest.raises(JudgeError, match="could not read the KScore judge output after 3 replies"):
        await judge_kscore(client, prompt="case-hopeless", generated=gen, ground_truth=gt)
    assert len(judge.requests_for("case-hopeless")) == 3


async def test_429_then_answer(judge: ScriptedJudge, client: JudgeClient, tmp_path: Path) -> None:
    gen, gt = make_image(tmp_path / "g.png"), make_image(tmp_path / "t.png")
    judge.on("case-busy", error(429, retry_after="0"), ok(kscore_reply(0.5, 0.5, 0.5, 0.5)))
    assert (await judge_kscore(client, prompt="case-busy", generated=gen, ground_truth=gt)).overall == pytest.approx(0.5)


async def test_missing_image_raises_image_load_error_before_any_request(judge: ScriptedJudge, client: JudgeClient, tmp_path: Path) -> None:
    gt = make_image(tmp_path / "t.png")
    with pytest.raises(ImageLoadError, match="image not found: .*nope.png"):
        await judge_kscore(client, prompt="x", generated=tmp_path / "nope.png", ground_truth=gt)
    assert judge.requests == []


def test_images_upright_capped_and_flattened(tmp_path: Path) -> None:
    # EXIF orientation 6: stored 40x20, displayed rotated 90° clockwise as 20x40.
    rotated = decode(image_data_url(make_image(tmp_path / "r.jpg", (40, 20), exif_orientation=6)))
    assert rotated.size == (20, 40)
    assert rotated.getpixel((16, 3))[2] > 150  # the blue corner marker moved to the top right
    capped = decode(image_data_url(make_image(tmp_path / "big.png", (300, 100)), max_side=150))
    assert capped.size == (150, 50)
    flat = decode(image_data_url(make_image(tmp_path / "alpha.png", (20, 20), mode="RGBA")))
    assert flat.mode == "RGB" and min(flat.getpixel((15, 15))) > 240  # transparent -> white
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match="cannot decode image .*bad.png"):
        image_data_url(tmp_path / "bad.png")


def _program() -> Program:
    return Program(
        gen_prompt="The Eiffel Tower at dusk as in the first reference image, with a sign reading 'PARIS 1889'.",
        reference_images=[Reference(img_id="IMG_002", title="Eiffel Tower, 2019 photo", page_url="https://example.org/e",
                                    note="tower shape")],
    )


async def test_judge_program_with_and_without_ground_truth(judge: ScriptedJudge, client: JudgeClient, tmp_path: Path) -> None:
    judge.on("case-tower", ok('Verdict: {"rationale": "Constraints: tower, dusk, sign.", "score": 0.75}'))
    with_gt = await judge_program(client, prompt="case-tower at dusk", program=_program(), ground_truth=make_image(tmp_path / "gt.png"))
    without = await judge_program(client, prompt="case-tower at dusk", program=_program())
    assert with_gt.score == without.score == 0.75
    first, second = judge.requests_for("case-tower")
    assert len(first.images()) == 1 and second.images() == []
    assert "The first reference image (IMG_002)" in first.text and "Eiffel Tower, 2019 photo" in first.text
    assert first.body["messages"][0]["content"] == builtin_rubric("sufficiency")


async def test_judge_program_unreadable_raises(judge: ScriptedJudge, client: JudgeClient) -> None:
    judge.on("case-mute", ok("no idea"))
    with pytest.raises(JudgeError, match="sufficiency"):
        await judge_program(client, prompt="case-mute", program=_program())


def test_program_text_without_references() -> None:
    assert "Reference images: none" in program_text(Program(gen_prompt="a cat"))


def test_cli_defaults_match_the_image_module() -> None:
    from genevolve_graph.cli import evaluate as commands
    from genevolve_graph.evaluation import images

    assert (commands.DEFAULT_MAX_SIDE, commands.DEFAULT_JPEG_QUALITY) == (images.DEFAULT_MAX_SIDE, images.DEFAULT_JPEG_QUALITY)
