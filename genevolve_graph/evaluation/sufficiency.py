"""The program-sufficiency judge: the text reward R_text of training (DESIGN.md §5).

A judge model reads the request, the program (gen_prompt and its references, each with
title, source and note) and, when given, the ground-truth image, and says on
{0, 0.25, 0.5, 0.75, 1} whether the program carries everything a generator needs. It
scores the plan itself, so it rewards good research and writing even when the renderer
lets the program down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from genevolve_graph.evaluation.images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_SIDE, image_part
from genevolve_graph.evaluation.judge_client import JudgeClient, JudgeError, ask_parsed
from genevolve_graph.evaluation.parsing import coerce_score, recover_object
from genevolve_graph.evaluation.rubric import builtin_rubric
from genevolve_graph.core.state import Program

SUFFICIENCY_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")

__all__ = ["JudgeError", "SufficiencyScore", "judge_program", "parse_sufficiency", "program_text", "sufficiency_messages"]


class SufficiencyScore(BaseModel):
    """How completely a program specifies what the request needs."""

    score: float = Field(description="One of 0, 0.25, 0.5, 0.75, 1.")
    rationale: str = ""
    raw: str = Field(default="", description="The judge's reply as received.")

    @field_validator("score")
    @classmethod
    def _on_grid(cls, value: float) -> float:
        if value not in SUFFICIENCY_GRID:
            raise ValueError(f"a sufficiency score is one of {SUFFICIENCY_GRID}, got {value}")
        return float(value)


def parse_sufficiency(raw: str) -> SufficiencyScore:
    """Read a sufficiency judge reply; raises ``ValueError`` when no score can be recovered."""
    obj = {str(k).strip().lower(): v for k, v in recover_object(raw, ("rationale", "score")).items()}
    if obj.get("score") is None:
        raise ValueError("the judge output has no 'score'")
    score = coerce_score(obj["score"], SUFFICIENCY_GRID, name="score")
    return SufficiencyScore(score=score, rationale=str(obj.get("rationale", "")).strip(), raw=raw)


def program_text(program: Program) -> str:
    """The program as the judge reads it: the prompt, then each reference in order."""
    lines = ["Generation prompt:", program.gen_prompt.strip() or "(empty)", ""]
    if not program.reference_images:
        lines.append("Reference images: none (the generator works from the prompt alone).")
    for index, ref in enumerate(program.reference_images):
        ordinal = _ORDINALS[index] if index < len(_ORDINALS) else f"#{index + 1}"
        lines.append(f"The {ordinal} reference image ({ref.img_id}):")
        lines.append(f"  title: {ref.title or '(none)'}")
        if ref.page_url or ref.url:
            lines.append(f"  source: {ref.page_url or ref.url}")
        lines.append(f"  note: {ref.note or '(none)'}")
    return "\n".join(lines)


def sufficiency_messages(
    *,
    prompt: str,
    program: Program,
    ground_truth: Path | None = None,
    rubric: str | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> list[dict]:
    """The chat messages of one sufficiency judgement."""
    content: list[dict] = [
        {"type": "text", "text": f"Request:\n{prompt.strip()}\n\nProgram:\n{program_text(program)}"},
    ]
    if ground_truth is not None:
        content.append({"type": "text", "text": "Ground-truth image for the request:"})
        content.append(image_part(ground_truth, max_side=max_side, quality=jpeg_quality))
    else:
        content.append({"type": "text", "text": "No ground-truth image is available; judge from the request alone."})
    content.append({"type": "text", "text": "Reply with the JSON object only."})
    return [
        {"role": "system", "content": rubric if rubric is not None else builtin_rubric("sufficiency")},
        {"role": "user", "content": content},
    ]


async def judge_program(
    client: JudgeClient,
    *,
    prompt: str,
    program: Program,
    ground_truth: Path | None = None,
    rubric: str | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    parse_attempts: int = 3,
) -> SufficiencyScore:
    """Judge whether ``program`` is sufficient for ``prompt`` (R_text).

    Raises :class:`JudgeError` when the endpoint fails or the reply stays unreadable, and
    ``ImageLoadError`` when ``ground_truth`` is given but missing or undecodable.
    """
    if not prompt or not prompt.strip():
        raise ValueError("judge_program needs a non-empty prompt")
    messages = sufficiency_messages(
        prompt=prompt, program=program, ground_truth=ground_truth, rubric=rubric,
        max_side=max_side, jpeg_quality=jpeg_quality,
    )
    return await ask_parsed(client, messages, parse_sufficiency, attempts=parse_attempts, what="sufficiency judge output")
