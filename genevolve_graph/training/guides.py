"""Decision Guides: what the SDL teacher is told, and the distiller that writes them.

A Decision Guide (DESIGN.md §5) turns the difference between the best and the worst rollout
of one GRPO group into reusable advice. It has a ``retrieval_key`` (a trigger phrase and a
one-sentence summary of the request, which the experience buffer embeds) and
``decision_guidance``: short imperative bullets of six kinds (tool plan, search queries,
skill routing, reference selection, program writing, failure defenses).

The distiller is an LLM behind an OpenAI-compatible endpoint (any client with
``async complete(messages) -> str``, e.g. ``evaluation.judge_client.JudgeClient``). It sees
the request, both trajectories (turns shortened) and their rewards, and answers in JSON.
The wording of its instructions is this project's own.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from genevolve_graph.protocol import loads_lenient

GUIDANCE_KINDS: tuple[str, ...] = (
    "tool_plan",
    "search_queries",
    "skill_routing",
    "reference_selection",
    "program_writing",
    "failure_defenses",
)
_KIND_TITLES = {
    "tool_plan": "Tool plan",
    "search_queries": "Search queries",
    "skill_routing": "Skill routing",
    "reference_selection": "Reference selection",
    "program_writing": "Program writing",
    "failure_defenses": "Failure defenses",
}
MAX_BULLETS_PER_KIND = 4
MAX_BULLET_CHARS = 300


def _clean_bullets(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("guidance must be a list of strings")
    out = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError("every guidance bullet must be a string")
        text = re.sub(r"\s+", " ", item).strip().lstrip("-*• ").strip()
        if text:
            out.append(text[:MAX_BULLET_CHARS])
    return out[:MAX_BULLETS_PER_KIND]


class RetrievalKey(BaseModel):
    """What the buffer indexes: the kind of request this guide is for."""

    trigger: str = Field(description="A short phrase naming the kind of request, e.g. 'landmark with exact measurements'.")
    summary: str = Field(description="One sentence summarising the request the guide came from.")

    @field_validator("trigger", "summary")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = re.sub(r"\s+", " ", value).strip()
        if not value:
            raise ValueError("must not be empty")
        return value


class DecisionGuidance(BaseModel):
    """Imperative bullets, by kind of decision."""

    tool_plan: list[str] = Field(default_factory=list)
    search_queries: list[str] = Field(default_factory=list)
    skill_routing: list[str] = Field(default_factory=list)
    reference_selection: list[str] = Field(default_factory=list)
    program_writing: list[str] = Field(default_factory=list)
    failure_defenses: list[str] = Field(default_factory=list)

    @field_validator(*GUIDANCE_KINDS, mode="before")
    @classmethod
    def _clean(cls, value: Any) -> list[str]:
        return _clean_bullets(value)

    @model_validator(mode="after")
    def _some_advice(self) -> "DecisionGuidance":
        if not any(getattr(self, kind) for kind in GUIDANCE_KINDS):
            raise ValueError("decision_guidance holds no bullet at all")
        return self


class DecisionGuide(BaseModel):
    """One guide, with where it came from."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    retrieval_key: RetrievalKey
    decision_guidance: DecisionGuidance
    source_request: str = ""
    reward_best: float | None = None
    reward_worst: float | None = None
    step: int | None = None

    def key_text(self) -> str:
        """The text the buffer embeds: trigger + summary."""
        return f"{self.retrieval_key.trigger}: {self.retrieval_key.summary}"

    def render(self) -> str:
        """The guide as the teacher reads it, appended to its system prompt."""
        lines = [
            "## Experience from similar requests",
            f"Applies to: {self.retrieval_key.trigger}.",
        ]
        for kind in GUIDANCE_KINDS:
            bullets = getattr(self.decision_guidance, kind)
            if bullets:
                lines.append(f"{_KIND_TITLES[kind]}:")
                lines += [f"- {b}" for b in bullets]
        return "\n".join(lines)


# --------------------------------------------------------------------------- pairs


def pick_pair(rewards: Sequence[float | None], delta_min: float) -> tuple[int, int] | None:
    """Indices (best, worst) of one group when their reward gap is at least ``delta_min``.

    Missing rewards (None / NaN: a failed render or judge call) take no part. Ties go to the
    earliest rollout, so the choice is reproducible.
    """
    scored = [(i, float(r)) for i, r in enumerate(rewards) if r is not None and not math.isnan(float(r))]
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda x: (x[1], -x[0]))
    worst = min(scored, key=lambda x: (x[1], x[0]))
    if best[1] - worst[1] < delta_min or best[0] == worst[0]:
        return None
    return best[0], worst[0]


# --------------------------------------------------------------------------- distiller


class ChatClient(Protocol):
    """Anything that completes a chat (``evaluation.judge_client.JudgeClient`` does)."""

    async def complete(self, messages: list[dict[str, Any]]) -> str: ...


class GuideError(RuntimeError):
    """The distiller gave no usable guide (endpoint failure or unreadable output)."""


@dataclass
class Attempt:
    """One rollout as the distiller sees it."""

    reward: float
    messages: list[dict[str, Any]]
    """The turns after the request: assistant replies and tool responses (chat dicts)."""
    components: dict[str, float | None] = field(default_factory=dict)
    """Reward components by name (e.g. image_reward, program_reward)."""
    program: dict[str, Any] | None = None
    termination: str = ""


DISTILLER_SYSTEM = """You coach an image-generation agent. The agent answers an image request by calling tools \
(search for facts, image_search for visual references, query_knowledge for generation skills) and then \
writing a program: a generation prompt plus up to two reference images.

You get one request and two attempts at it, a better one and a worse one, with their rewards (the \
image score against a ground-truth image and a score of how complete the program is). Find the \
decisions that made the difference and write advice that would help on *similar* requests, not only \
this one.

Answer with one JSON object and nothing else:
{"retrieval_key": {"trigger": "<short phrase naming this kind of request>", \
"summary": "<one sentence describing the request>"},
 "decision_guidance": {"tool_plan": [...], "search_queries": [...], "skill_routing": [...], \
"reference_selection": [...], "program_writing": [...], "failure_defenses": [...]}}

Each list holds at most three short imperative bullets ("Search the exact height before drawing \
the tower"); leave a list empty when the attempts say nothing about it. Never mention IMG ids, URLs \
or file paths, and never copy the better attempt's prompt."""


def _shorten(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 20].rstrip() + " …[shortened]"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def describe_attempt(label: str, attempt: Attempt, *, turn_chars: int = 1200) -> str:
    """One attempt in plain text for the distiller."""
    parts = [f"### {label} attempt: reward {attempt.reward:.3f}"]
    comps = {k: v for k, v in attempt.components.items() if v is not None and not math.isnan(v)}
    if comps:
        parts.append("reward parts: " + ", ".join(f"{k} {v:.3f}" for k, v in comps.items()))
    if attempt.termination:
        parts.append(f"ended by: {attempt.termination}")
    for message in attempt.messages:
        role = "agent" if message.get("role") == "assistant" else "tool result"
        parts.append(f"[{role}]\n{_shorten(_content_text(message.get('content', '')), turn_chars)}")
    if attempt.program is not None:
        parts.append("final program: " + json.dumps(attempt.program, ensure_ascii=False))
    return "\n".join(parts)


def distiller_messages(request: str, best: Attempt, worst: Attempt, *, turn_chars: int = 1200) -> list[dict[str, Any]]:
    user = "\n\n".join(
        [
            f"## Request\n{request}",
            describe_attempt("Better", best, turn_chars=turn_chars),
            describe_attempt("Worse", worst, turn_chars=turn_chars),
        ]
    )
    return [{"role": "system", "content": DISTILLER_SYSTEM}, {"role": "user", "content": user}]


def parse_guide(raw: str) -> DecisionGuide:
    """Read the distiller's JSON (code fences and trailing commas forgiven)."""
    try:
        data = loads_lenient(raw)
    except ValueError as exc:
        raise GuideError(f"the distiller's reply is {exc}") from exc
    if not isinstance(data, dict):
        raise GuideError("the distiller's reply is not a JSON object")
    try:
        return DecisionGuide.model_validate(
            {"retrieval_key": data.get("retrieval_key"), "decision_guidance": data.get("decision_guidance")}
        )
    except ValidationError as exc:
        raise GuideError(f"the distiller's guide does not fit the schema: {exc.errors()[0]['msg']}") from exc


class GuideDistiller:
    """Writes a Decision Guide from a best/worst pair through a chat endpoint."""

    def __init__(self, client: ChatClient, *, turn_chars: int = 1200) -> None:
        self.client = client
        self.turn_chars = turn_chars

    async def distill(self, request: str, best: Attempt, worst: Attempt, *, step: int | None = None) -> DecisionGuide:
        messages = distiller_messages(request, best, worst, turn_chars=self.turn_chars)
        try:
            raw = await self.client.complete(messages)
        except Exception as exc:  # the client's own error type (JudgeError, ...) after its retries
            raise GuideError(f"the distiller endpoint failed: {exc}") from exc
        guide = parse_guide(raw)
        return guide.model_copy(
            update={"source_request": request, "reward_best": best.reward, "reward_worst": worst.reward, "step": step}
        )
