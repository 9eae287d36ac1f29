"""Fixtures for the evaluation tests: the scripted judge server and small images."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.evaluation.judge_server import ScriptedJudge


@pytest.fixture(scope="session")
def judge_server() -> Iterator[ScriptedJudge]:
    server = ScriptedJudge().start()
    yield server
    server.stop()


@pytest.fixture
def judge(judge_server: ScriptedJudge) -> ScriptedJudge:
    """The running server with an empty script and no recorded requests."""
    judge_server.reset()
    return judge_server


def make_image(path: Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 40, 40),
               *, exif_orientation: int | None = None, mode: str = "RGB") -> Path:
    """A small image file; a top-left marker square makes orientation checkable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new(mode, size, color if mode == "RGB" else (*color, 0))
    for x in range(min(8, size[0])):
        for y in range(min(8, size[1])):
            im.putpixel((x, y), (0, 0, 255) if mode == "RGB" else (0, 0, 255, 255))
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    im.save(path, **kwargs)
    return path


def kscore_reply(f: float, v: float, t: float, a: float, na: bool = False, rationale: str = "Constraints: a red square.") -> str:
    return json.dumps({"rationale": rationale, "faithfulness": f, "visual_correctness": v, "text_accuracy": t,
                       "aesthetics": a, "text_accuracy_na": na})
