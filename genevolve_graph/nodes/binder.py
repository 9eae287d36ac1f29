"""The reference binder: IMG_### ids for retrieved images, and the answer's ids resolved.

Ids are unique per trajectory, from IMG_001 upward; the same image (same local file, or
same URL) keeps its id when it is found again. At the end the binder resolves the answer's
ids to the registry's references, with the policy's notes; what cannot be resolved is
dropped and the repair recorded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


from genevolve_graph.core.state import AgentState, Reference
from genevolve_graph.tools.base import ImageHit

_ID_RE = re.compile(r"^\s*img[_\- ]?0*(\d+)\s*$", re.I)


def format_id(number: int) -> str:
    return f"IMG_{number:03d}"


def normalise_id(raw: str) -> str | None:
    """``IMG_7``, ``img-007`` and ``IMG_007`` all mean ``IMG_007``."""
    match = _ID_RE.match(raw or "")
    return format_id(int(match.group(1))) if match else None


def id_number(img_id: str) -> int:
    return int(img_id.split("_", 1)[1])


def assign_ids(registry: dict[str, Reference], hits: list[ImageHit]) -> tuple[list[Reference], dict[str, Reference]]:
    """Give each hit an id: an image seen before keeps its id. Returns (refs, new entries)."""
    known = {r.local_path or r.url: r for r in registry.values()}
    next_number = max((id_number(i) for i in registry), default=0) + 1
    refs: list[Reference] = []
    added: dict[str, Reference] = {}
    for hit in hits:
        key = hit.local_path or hit.url
        ref = known.get(key)
        if ref is None:
            ref = Reference(img_id=format_id(next_number), title=hit.title, url=hit.url, local_path=hit.local_path, page_url=hit.page_url)
            next_number += 1
            known[key] = ref
            added[ref.img_id] = ref
        if ref.img_id not in {r.img_id for r in refs}:
            refs.append(ref)
    return refs, added


def bind_answer(answer: dict[str, Any], registry: dict[str, Reference]) -> tuple[list[Reference | None], list[str]]:
    """The answer's references in the answer's order (``None`` where one had to be dropped)."""
    bound: list[Reference | None] = []
    repairs: list[str] = []
    seen: set[str] = set()
    for item in answer.get("reference_images") or []:
        raw = item.get("img_id", "") if isinstance(item, dict) else str(item)
        note = str(item.get("note", "")) if isinstance(item, dict) else ""
        img_id = normalise_id(raw)
        if img_id is None or img_id not in registry:
            repairs.append(f"dropped reference {raw!r}: no image search returned that id")
            bound.append(None)
            continue
        if img_id in seen:
            repairs.append(f"dropped duplicate reference {img_id}")
            bound.append(None)
            continue
        if img_id != raw:
            repairs.append(f"normalised reference id {raw!r} to {img_id}")
        ref = registry[img_id]
        if ref.local_path and not Path(ref.local_path).is_file():
            repairs.append(f"dropped reference {img_id}: its file {ref.local_path} is missing")
            bound.append(None)
            continue
        seen.add(img_id)
        bound.append(ref.model_copy(update={"note": note}))
    return bound, repairs


def binder(state: AgentState) -> dict[str, Any]:
    """Resolve the answer's ids (a sync node: it checks files, which LangGraph runs off the event loop)."""
    answer = state.get("answer")
    if not answer:
        return {}
    bound, repairs = bind_answer(answer, state.get("images") or {})
    return {"references": bound, "repairs": repairs}
