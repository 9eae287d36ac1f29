"""The KScore judge (DESIGN.md §4): a generated image against the ground truth for its request.

A multimodal judge sees the request, Image 1 (the generated image) and Image 2 (the ground
truth) and scores faithfulness, visual_correctness, text_accuracy and aesthetics, each in
{0, 0.5, 1}, plus ``text_accuracy_na`` when the request needs no readable text. A sample's
overall is 0.1 F + 0.4 V + 0.4 T + 0.1 A with T = 0.5 when text is not applicable.

The same function is the image reward R_img of training (DESIGN.md §5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, computed_field, field_validator

from genevolve_graph.evaluation.images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_SIDE, image_part
from genevolve_graph.evaluation.judge_client import JudgeClient, JudgeError, ask_parsed
from genevolve_graph.evaluation.parsing import coerce_bool, coerce_score, recover_object
from genevolve_graph.evaluation.rubric import builtin_rubric

KSCORE_GRID: tuple[float, ...] = (0.0, 0.5, 1.0)
DIMENSIONS: tuple[str, ...] = ("faithfulness", "visual_correctness", "text_accuracy", "aesthetics")
WEIGHTS: dict[str, float] = {"faithfulness": 0.1, "visual_correctness": 0.4, "text_accuracy": 0.4, "aesthetics": 0.1}
TEXT_NA_VALUE = 0.5
"""The text score used in the overall when the request needs no readable text."""
_KEYS = ("rationale", *DIMENSIONS, "text_accuracy_na")

__all__ = ["KScore", "JudgeError", "judge_kscore", "kscore_messages", "overall_from", "parse_kscore"]


def overall_from(faithfulness: float, visual_correctness: float, text_accuracy: float, aesthetics: float) -> float:
    """0.1 F + 0.4 V + 0.4 T + 0.1 A (the caller supplies T = 0.5 when text is not applicable)."""
    return (
        WEIGHTS["faithfulness"] * faithfulness
        + WEIGHTS["visual_correctness"] * visual_correctness
        + WEIGHTS["text_accuracy"] * text_accuracy
        + WEIGHTS["aesthetics"] * aesthetics
    )


class KScore(BaseModel):
    """One judged sample."""

    faithfulness: float = Field(description="Prompt adherence: presence and structure, in {0, 0.5, 1}.")
    visual_correctness: float = Field(description="Agreement with the ground truth's stable visual features.")
    text_accuracy: float = Field(description="Required readable text; 0.5 when not applicable.")
    aesthetics: float
    text_accuracy_na: bool = Field(default=False, description="The request needs no readable text.")
    rationale: str = ""
    raw: str = Field(default="", description="The judge's reply as received.")

    @field_validator(*DIMENSIONS)
    @classmethod
    def _on_grid(cls, value: float) -> float:
        if value not in KSCORE_GRID:
            raise ValueError(f"a KScore dimension is one of {KSCORE_GRID}, got {value}")
        return float(value)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def overall(self) -> float:
        """0.1 F + 0.4 V + 0.4 T + 0.1 A, with T = 0.5 when text is not applicable."""
        text = TEXT_NA_VALUE if self.text_accuracy_na else self.text_accuracy
        return overall_from(self.faithfulness, self.visual_correctness, text, self.aesthetics)

    def scores(self) -> dict[str, Any]:
        """The numbers alone (what ``results_eval.jsonl`` stores under ``scores``)."""
        return {**{d: getattr(self, d) for d in DIMENSIONS}, "text_accuracy_na": self.text_accuracy_na, "overall": self.overall}


def parse_kscore(raw: str) -> KScore:
    """Read a KScore judge reply; raises ``ValueError`` when a required score cannot be recovered.

    Off-grid numbers in 0..1 are snapped to the nearest of {0, 0.5, 1}. ``text_accuracy_na``
    absent means applicable; when it is true the text score is recorded as 0.5 whatever the
    judge wrote, as the rubric asks.
    """
    obj = recover_object(raw, _KEYS)
    obj = {str(k).strip().lower(): v for k, v in obj.items()}
    na = coerce_bool(obj["text_accuracy_na"], name="text_accuracy_na") if "text_accuracy_na" in obj else False
    values: dict[str, float] = {}
    for dim in DIMENSIONS:
        if dim == "text_accuracy" and na:
            values[dim] = TEXT_NA_VALUE
            continue
        if dim not in obj or obj[dim] is None:
            raise ValueError(f"the judge output has no {dim!r} score")
        values[dim] = coerce_score(obj[dim], KSCORE_GRID, name=dim)
    rationale = obj.get("rationale", "")
    return KScore(**values, text_accuracy_na=na, rationale=str(rationale).strip(), raw=raw)


def kscore_messages(
    *,
    prompt: str,
    generated: Path,
    ground_truth: Path,
    rubric: str | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> list[dict]:
    """The chat messages of one KScore judgement: rubric as system, request and both images as user.

    Raises ``ImageLoadError`` naming the file when an image is missing or unreadable.
    """
    gen_part = image_part(generated, max_side=max_side, quality=jpeg_quality)
    gt_part = image_part(ground_truth, max_side=max_side, quality=jpeg_quality)
    request = (
        f"Request (what the image must show):\n{prompt.strip()}\n\n"
        "Image 1 follows: the generated image, the one you grade."
    )
    return [
        {"role": "system", "content": rubric if rubric is not None else builtin_rubric("kscore")},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": request},
                gen_part,
                {"type": "text", "text": "Image 2 follows: the ground-truth reference image."},
                gt_part,
                {"type": "text", "text": "Reply with the JSON object only."},
            ],
        },
    ]


async def judge_kscore(
    client: JudgeClient,
    *,
    prompt: str,
    generated: Path,
    ground_truth: Path,
    rubric: str | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    parse_attempts: int = 3,
) -> KScore:
    """Judge ``generated`` against ``ground_truth`` for ``prompt``.

    ``rubric`` replaces the built-in system prompt. Raises :class:`JudgeError` when the
    endpoint fails or the reply stays unreadable after ``parse_attempts`` replies, and
    ``ImageLoadError`` when an image file is missing or undecodable.
    """
    if not prompt or not prompt.strip():
        raise ValueError("judge_kscore needs a non-empty prompt")
    messages = kscore_messages(
        prompt=prompt, generated=generated, ground_truth=ground_truth, rubric=rubric,
        max_side=max_side, jpeg_quality=jpeg_quality,
    )
    return await ask_parsed(client, messages, parse_kscore, attempts=parse_attempts, what="KScore judge output")
