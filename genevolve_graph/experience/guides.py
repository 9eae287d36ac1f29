"""Decision Guides: the advice SDL's teacher reads, as a validated type.

A Decision Guide (DESIGN.md §5) turns the difference between the best and the worst rollout
of one GRPO group into reusable advice. It has a ``retrieval_key`` (a trigger phrase and a
one-sentence summary of the request, which the experience buffer embeds) and
``decision_guidance``: short imperative bullets of six kinds (tool plan, search queries,
skill routing, reference selection, program writing, failure defenses).

The type lives below both the agent and the trainer: the planner's ``guidance="retrieve"``
reads guides at inference, and training writes them (``training.distill`` turns a
best-versus-worst pair into a guide).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from genevolve_graph.safety.protocol_tags import neutralize_tags


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
        """The guide as the teacher reads it, appended to its system prompt. A guide is data (a
        judge wrote it, a store or a folder holds it): protocol tags and chat-template tokens in
        it are defused exactly as in observations (``safety.protocol_tags``)."""
        lines = [
            "## Experience from similar requests",
            f"Applies to: {self.retrieval_key.trigger}.",
        ]
        for kind in GUIDANCE_KINDS:
            bullets = getattr(self.decision_guidance, kind)
            if bullets:
                lines.append(f"{_KIND_TITLES[kind]}:")
                lines += [f"- {b}" for b in bullets]
        return neutralize_tags("\n".join(lines))
