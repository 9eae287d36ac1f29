"""The distiller: an LLM that writes a Decision Guide from the best and the worst rollout.

The distiller is an LLM behind an OpenAI-compatible endpoint (any client with
``async complete(messages) -> str``, e.g. ``evaluation.judge_client.JudgeClient``). It sees
the request, both trajectories (turns shortened) and their rewards, and answers in JSON.
Two kinds:

- :class:`GuideDistiller` (text): the trajectories and rewards only, for a text-only LLM.
- :class:`VisualGuideDistiller`: a VLM that also *sees* what the rewards judged: the better
  and the worse attempt's rendered images and the ground-truth image when the row has one,
  as ``image_url`` data-URI parts beside the trajectories. The image score says *that* a
  render missed; the pixels say *what* it missed (wrong colour, a missing landmark, garbled
  text), which is what turns into a precise guide. An image that cannot be read is named as
  unavailable in the text rather than failing the guide.

The wording of the instructions is this project's own. The guide type itself is
``experience.guides.DecisionGuide``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from genevolve_graph.core.protocol import loads_lenient
from genevolve_graph.experience.guides import DecisionGuide

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
    image: str | None = None
    """The rendered image of the attempt's program (what the image reward judged), if any."""


_AGENT = """You coach an image-generation agent. The agent answers an image request by calling tools \
(search for facts, image_search for visual references, query_knowledge for generation skills) and then \
writing a program: a generation prompt plus up to two reference images."""

_ATTEMPTS = """You get one request and two attempts at it, a better one and a worse one, with their rewards (the \
image score against a ground-truth image and a score of how complete the program is)."""

_ANSWER = """Answer with one JSON object and nothing else:
{"retrieval_key": {"trigger": "<short phrase naming this kind of request>", \
"summary": "<one sentence describing the request>"},
 "decision_guidance": {"tool_plan": [...], "search_queries": [...], "skill_routing": [...], \
"reference_selection": [...], "program_writing": [...], "failure_defenses": [...]}}

Each list holds at most three short imperative bullets ("Search the exact height before drawing \
the tower"); leave a list empty when the attempts say nothing about it. Never mention IMG ids, URLs \
or file paths"""

# The two distillers share the agent's description, the attempts and the answer format.
DISTILLER_SYSTEM = f"""{_AGENT}

{_ATTEMPTS} Find the \
decisions that made the difference and write advice that would help on *similar* requests, not only \
this one.

{_ANSWER}, and never copy the better attempt's prompt."""


VISUAL_DISTILLER_SYSTEM = f"""{_AGENT} A generator turns the program \
into an image.

{_ATTEMPTS} You also *see* \
the image each attempt's program produced and, when there is one, the ground-truth image the request \
was scored against. Look at what the worse image gets wrong that the better one, or the ground truth, \
gets right (objects, counts, colours, layout, written text, style), trace each difference back to a \
decision in the trajectories, and write advice that would help on *similar* requests, not only this one.

{_ANSWER}, never describe the ground-truth image as something to copy, and never copy the better \
attempt's prompt."""


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


DISTILLER_KINDS: tuple[str, ...] = ("vision", "text")
DISTILLER_IMAGE_MAX_SIDE = 1024
"""Long-side cap of the images sent to the distiller: enough to see what went wrong, small
enough that a pair plus the ground truth stays well inside a gateway's request limit."""


def _image_parts(label: str, path: str | None, *, max_side: int) -> list[dict[str, Any]]:
    """``[text label, image]``, or one text part saying why there is no image."""
    from genevolve_graph.evaluation.images import ImageLoadError, image_part

    if not path:
        return [{"type": "text", "text": f"{label}: not available."}]
    try:
        part = image_part(Path(path), max_side=max_side, quality=90)
    except ImageLoadError:
        return [{"type": "text", "text": f"{label}: not available (the file could not be read)."}]
    return [{"type": "text", "text": f"{label}:"}, part]


def visual_distiller_messages(
    request: str, best: Attempt, worst: Attempt, *, ground_truth: str | None = None, turn_chars: int = 1200,
    max_side: int = DISTILLER_IMAGE_MAX_SIDE,
) -> list[dict[str, Any]]:
    """The VLM distiller's chat: request, ground truth, then each attempt's text and render."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": f"## Request\n{request}"}]
    if ground_truth:
        parts += _image_parts("Ground-truth image (what the image score compares against)", ground_truth, max_side=max_side)
    for label, attempt in (("Better", best), ("Worse", worst)):
        parts.append({"type": "text", "text": describe_attempt(label, attempt, turn_chars=turn_chars)})
        if attempt.program is None:
            parts.append({"type": "text", "text": f"{label} attempt's image: none (the attempt wrote no program)."})
        else:
            parts += _image_parts(f"{label} attempt's image", attempt.image, max_side=max_side)
    return [{"role": "system", "content": VISUAL_DISTILLER_SYSTEM}, {"role": "user", "content": parts}]


class GuideDistiller:
    """Writes a Decision Guide from a best/worst pair through a chat endpoint (text only)."""

    kind = "text"

    def __init__(self, client: ChatClient, *, turn_chars: int = 1200) -> None:
        self.client = client
        self.turn_chars = turn_chars

    def messages(self, request: str, best: Attempt, worst: Attempt, *, ground_truth: str | None = None) -> list[dict[str, Any]]:
        """The chat sent to the endpoint (the text distiller leaves images out)."""
        return distiller_messages(request, best, worst, turn_chars=self.turn_chars)

    async def distill(
        self, request: str, best: Attempt, worst: Attempt, *, step: int | None = None, ground_truth: str | None = None
    ) -> DecisionGuide:
        """A guide from the pair. ``ground_truth``: the row's ground-truth image (seen by the
        visual distiller only)."""
        messages = self.messages(request, best, worst, ground_truth=ground_truth)
        try:
            raw = await self.client.complete(messages)
        except Exception as exc:  # the client's own error type (JudgeError, ...) after its retries
            raise GuideError(f"the distiller endpoint failed: {exc}") from exc
        guide = parse_guide(raw)
        return guide.model_copy(
            update={"source_request": request, "reward_best": best.reward, "reward_worst": worst.reward, "step": step}
        )


class VisualGuideDistiller(GuideDistiller):
    """The distiller for a VLM endpoint: it also sees both renders and the ground truth."""

    kind = "vision"

    def __init__(self, client: ChatClient, *, turn_chars: int = 1200, max_side: int = DISTILLER_IMAGE_MAX_SIDE) -> None:
        super().__init__(client, turn_chars=turn_chars)
        self.max_side = max_side

    def messages(self, request: str, best: Attempt, worst: Attempt, *, ground_truth: str | None = None) -> list[dict[str, Any]]:
        return visual_distiller_messages(request, best, worst, ground_truth=ground_truth, turn_chars=self.turn_chars, max_side=self.max_side)


def make_distiller(client: ChatClient, kind: str = "vision") -> GuideDistiller:
    """The distiller of ``kind`` (``vision``: sees the renders; ``text``: trajectories only)."""
    if kind == "vision":
        return VisualGuideDistiller(client)
    if kind == "text":
        return GuideDistiller(client)
    raise ValueError(f"unknown distiller kind {kind!r}; choose one of {', '.join(DISTILLER_KINDS)}")
