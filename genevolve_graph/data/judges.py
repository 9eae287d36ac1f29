"""The two VLM judges of the pipeline, on the shared ``JudgeClient``.

- The **trajectory audit** (filter stage) scores whether each reference supports the
  image, whether the searched evidence was adopted, and which hard constraints the program
  covers.
- The **visual judge** (visual-filter stage) scores a ground-truth render on prompt
  consistency, reference use, visual coherence and quality (1-5).

Both ask again when a reply cannot be read (three replies in all) and raise ``JudgeError``
when the endpoint keeps failing: the caller records that as an infrastructure failure.
Rubrics are ``data/prompts/audit.md`` and ``visual.md`` (this project's own wording).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from genevolve_graph.evaluation.images import image_part
from genevolve_graph.evaluation.judge_client import JudgeClient, ask_parsed
from genevolve_graph.evaluation.parsing import coerce_score, recover_object

VISUAL_DIMENSIONS = ("prompt_consistency", "reference_use", "visual_coherence", "quality")
AUDIT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
VISUAL_GRID = (1.0, 2.0, 3.0, 4.0, 5.0)
MAX_EVIDENCE_CHARS = 4000
JUDGE_MAX_SIDE = 1024


def rubric(name: str) -> str:
    return resources.files("genevolve_graph.data").joinpath("prompts", f"{name}.md").read_text(encoding="utf-8").strip()


def make_client(config: Any) -> JudgeClient:
    """A judge client from a recipe's ``EndpointConfig``. Its key is the one its own
    ``api_key_env`` names, never a fallback: the teacher's key must not reach the judge's host."""
    return JudgeClient(config.base_url, config.model, config.api_key() or "EMPTY", rpm=config.rpm,
                       max_retries=config.max_retries, timeout=config.timeout)


def search_evidence(messages: list[dict[str, Any]]) -> str:
    """The text-search observations of a trajectory (what the teacher could have adopted)."""
    blocks = []
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
        if message.get("role") in ("user", "tool") and "--- search result for" in text:
            blocks.append(text.replace("<tool_response>", "").replace("</tool_response>", "").strip())
    joined = "\n".join(blocks)
    return joined[:MAX_EVIDENCE_CHARS] + (" [...]" if len(joined) > MAX_EVIDENCE_CHARS else "")


def constraints_text(constraints: list[str]) -> str:
    return "\n".join(f"{i + 1}. {c}" for i, c in enumerate(constraints)) or "(none)"


# --------------------------------------------------------------------------- the audit


@dataclass
class AuditScores:
    reference_support: list[float]
    evidence_adoption: float | None
    constraints: list[bool]
    rationale: str
    raw: str

    @property
    def coverage(self) -> float:
        return sum(self.constraints) / len(self.constraints) if self.constraints else 1.0

    def to_json(self) -> dict[str, Any]:
        return {"reference_support": self.reference_support, "evidence_adoption": self.evidence_adoption,
                "constraints": self.constraints, "constraint_coverage": round(self.coverage, 4), "rationale": self.rationale}


def parse_audit(raw: str, *, references: int, constraints: int) -> AuditScores:
    from genevolve_graph.evaluation.parsing import coerce_bool

    obj = {str(k).strip().lower(): v for k, v in recover_object(raw, ("reference_support", "evidence_adoption", "constraints")).items()}
    support = obj.get("reference_support", [])
    if support is None:
        support = []
    if not isinstance(support, list):
        support = [support]
    if len(support) != references:
        raise ValueError(f"reference_support has {len(support)} scores for {references} reference image(s)")
    flags = obj.get("constraints")
    if not isinstance(flags, list) or len(flags) != constraints:
        raise ValueError(f"'constraints' must list {constraints} true/false values, one per hard constraint")
    adoption = obj.get("evidence_adoption")
    return AuditScores(
        reference_support=[coerce_score(s, AUDIT_GRID, name="reference_support") for s in support],
        evidence_adoption=None if adoption is None else coerce_score(adoption, AUDIT_GRID, name="evidence_adoption"),
        constraints=[coerce_bool(f, name="constraints") for f in flags],
        rationale=str(obj.get("rationale", "")).strip(), raw=raw,
    )


def audit_messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    from genevolve_graph.data.batch_adapter import program_of
    from genevolve_graph.evaluation.sufficiency import program_text

    program = program_of(record)
    if program is None:
        raise ValueError("the record has no program to audit")
    constraints = list(record.get("hard_constraints") or [])
    content: list[dict[str, Any]] = [{"type": "text", "text": (
        f"Request:\n{record.get('question') or record.get('prompt')}\n\nHard constraints:\n{constraints_text(constraints)}\n\n"
        f"Evidence from the agent's text searches:\n{search_evidence(record.get('messages') or []) or '(no text search was made)'}\n\n"
        f"Program:\n{program_text(program)}")}]
    for index, ref in enumerate(program.reference_images):
        content.append({"type": "text", "text": f"Reference image {index + 1} ({ref.img_id}):"})
        content.append(image_part(Path(ref.local_path), max_side=JUDGE_MAX_SIDE, quality=90))
    content.append({"type": "text", "text": "Reply with the JSON object only."})
    return [{"role": "system", "content": rubric("audit")}, {"role": "user", "content": content}]


async def audit_trajectory(client: JudgeClient, record: dict[str, Any]) -> AuditScores:
    refs = len(record.get("reference_images") or [])
    constraints = len(record.get("hard_constraints") or [])
    return await ask_parsed(client, audit_messages(record), lambda raw: parse_audit(raw, references=refs, constraints=constraints),
                            what="trajectory audit")


def audit_verdict(scores: AuditScores, config: Any) -> str | None:
    """The audit criterion a trajectory fails first (None when it passes)."""
    if scores.reference_support and min(scores.reference_support) < config.min_reference_support:
        return "audit_reference_support"
    if scores.evidence_adoption is not None and scores.evidence_adoption < config.min_evidence_adoption:
        return "audit_evidence_adoption"
    if scores.coverage < config.min_constraint_coverage:
        return "audit_constraint_coverage"
    return None


# --------------------------------------------------------------------------- the visual judge


def parse_visual(raw: str, *, has_references: bool) -> dict[str, Any]:
    obj = {str(k).strip().lower(): v for k, v in recover_object(raw, VISUAL_DIMENSIONS).items()}
    scores: dict[str, Any] = {}
    for name in VISUAL_DIMENSIONS:
        value = obj.get(name)
        if value is None and name == "reference_use" and not has_references:
            scores[name] = None
            continue
        if value is None:
            raise ValueError(f"the judge output has no {name!r}")
        scores[name] = coerce_score(value, VISUAL_GRID, name=name)
    scores["rationale"] = str(obj.get("rationale", "")).strip()
    return scores


def visual_messages(record: dict[str, Any], image: Path) -> list[dict[str, Any]]:
    refs = record.get("reference_images") or []
    content: list[dict[str, Any]] = [{"type": "text", "text": (
        f"Request:\n{record.get('question') or record.get('prompt')}\n\nHard constraints:\n"
        f"{constraints_text(list(record.get('hard_constraints') or []))}\n\nGeneration prompt:\n{record.get('gen_prompt')}")}]
    for index, ref in enumerate(refs):
        content.append({"type": "text", "text": f"Reference image {index + 1}:"})
        content.append(image_part(Path(ref["local_path"]), max_side=JUDGE_MAX_SIDE, quality=90))
    if not refs:
        content.append({"type": "text", "text": "There are no reference images."})
    content.append({"type": "text", "text": "The generated image:"})
    content.append(image_part(image, max_side=JUDGE_MAX_SIDE, quality=95))
    content.append({"type": "text", "text": "Reply with the JSON object only."})
    return [{"role": "system", "content": rubric("visual")}, {"role": "user", "content": content}]


async def judge_render(client: JudgeClient, record: dict[str, Any], image: Path) -> dict[str, Any]:
    has_refs = bool(record.get("reference_images"))
    return await ask_parsed(client, visual_messages(record, image), lambda raw: parse_visual(raw, has_references=has_refs),
                            what="visual judge output")


def visual_verdict(scores: dict[str, Any], thresholds: dict[str, float]) -> str | None:
    for name in VISUAL_DIMENSIONS:
        value = scores.get(name)
        if value is not None and name in thresholds and value < thresholds[name]:
            return f"visual_{name}"
    return None
