"""The program emitter: the bound answer validated into a ``Program``.

Rules (DESIGN.md §2): references sorted by id, at most ``n_max_reference_images``;
gen_prompt names references only by ordinal phrases and holds no ``IMG_###`` and no URL.
What can be repaired is repaired and recorded in ``repairs`` (ordinal phrases are remapped
when references are dropped or reordered); what cannot ends with a clear termination.
"""

from __future__ import annotations

import re
from typing import Any


from genevolve_graph.nodes.binder import id_number, normalise_id
from genevolve_graph.nodes.common import current_context
from genevolve_graph.core.state import MAX_NOTE_CHARS, AgentState, Program, Reference

ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_ORDINAL_INDEX = {w: i for i, w in enumerate(ORDINAL_WORDS)} | {"1st": 0, "2nd": 1, "3rd": 2, "4th": 3, "5th": 4}
ORDINAL_PHRASE = re.compile(
    r"\b(?P<the>the\s+)?(?P<ord>first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|1st|2nd|3rd|4th|5th)\s+(?P<noun>reference\s+image|reference|ref(?:erence)?\s+picture)\b",
    re.I,
)
IMG_TOKEN = re.compile(r"\(?\s*\bIMG[_\- ]?\d{1,}\b\s*\)?", re.I)
URL_TOKEN = re.compile(
    r"\(?\s*(?:\b[a-z][a-z0-9+.\-]{0,30}://|\bwww\.|\b(?:data|file|javascript|mailto|blob):"
    r"|(?<![\w:/\\])//(?=[\w\[%])|(?<![\w\\])\\\\(?=[\w.?\[%$]))(?:\[[0-9a-f:.%]*\]|[^\s)\]])+\)?",
    re.I,
)
"""Any URL (every scheme, ``www.``, the scheme-only forms ``data:``/``file:``/..., a
scheme-relative ``//host/path``) and any UNC path (``\\\\host\\share``, ``\\\\?\\...``): a renderer
or a viewer would fetch or open each of them."""


def ordinal_phrase(index: int) -> str:
    return f"the {ORDINAL_WORDS[index]} reference image"


DEFAULT_MAX_PROMPT_CHARS = 4000
"""= ``AgentContext.max_prompt_chars``, and the render service's default ``--max-prompt-chars``."""


def emit_program(
    answer: dict[str, Any], bound: list[Reference | None], max_refs: int, max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
) -> tuple[Program | None, list[str], str]:
    """Validate and repair. Returns (program or None, repairs, error)."""
    repairs: list[str] = []
    kept = [r for r in bound if r is not None]
    if len(kept) > max_refs:
        repairs.append(f"kept the first {max_refs} of {len(kept)} references (the limit is {max_refs})")
        kept = kept[:max_refs]
    kept = [_bounded_note(r, repairs) for r in kept]
    ordered = sorted(kept, key=lambda r: id_number(r.img_id))
    if [r.img_id for r in ordered] != [r.img_id for r in kept]:
        repairs.append("sorted references by id: " + ", ".join(r.img_id for r in ordered))
    new_position = {r.img_id: i for i, r in enumerate(ordered)}
    # The policy's ordinals count its own list, dropped entries included.
    old_to_new: dict[int, int | None] = {}
    for old_index, ref in enumerate(bound):
        old_to_new[old_index] = new_position.get(ref.img_id) if ref is not None else None

    prompt = str(answer.get("gen_prompt", ""))
    prompt, changed = _remap_ordinals(prompt, old_to_new)  # the policy's ordinals first,
    repairs += changed
    prompt, changed = _replace_ids(prompt, new_position)  # then ids become final ordinals
    repairs += changed
    stripped = URL_TOKEN.sub(" ", prompt)
    if stripped != prompt:
        repairs.append("removed URLs from gen_prompt")
        prompt = stripped
    prompt = re.sub(r"\s+([,.;:!?])", r"\1", " ".join(prompt.split()))
    if not prompt:
        return None, repairs, "the answer's gen_prompt is empty once IMG ids and URLs are removed"
    if max_prompt_chars > 0 and len(prompt) > max_prompt_chars:
        cut = _cut_at_word(prompt, max_prompt_chars)
        repairs.append(f"cut gen_prompt from {len(prompt)} to {len(cut)} characters (the limit is {max_prompt_chars}: max_prompt_chars)")
        prompt = cut
    return Program(gen_prompt=prompt, reference_images=ordered), repairs, ""


def _bounded_note(reference: Reference, repairs: list[str]) -> Reference:
    if len(reference.note) <= MAX_NOTE_CHARS:
        return reference
    cut = _cut_at_word(reference.note, MAX_NOTE_CHARS)
    repairs.append(f"cut the note of {reference.img_id} from {len(reference.note)} to {len(cut)} characters (the limit is {MAX_NOTE_CHARS})")
    return reference.model_copy(update={"note": cut})


def _cut_at_word(text: str, limit: int) -> str:
    """The longest prefix of ``text`` within ``limit`` characters that ends between words
    (a single word longer than the limit is cut inside it)."""
    head = text[: limit + 1]
    if len(head) <= limit:
        return text
    space = head.rfind(" ")
    return (head[:space] if space > 0 else head[:limit]).rstrip(" ,;:")


def _replace_ids(prompt: str, position: dict[str, int]) -> tuple[str, list[str]]:
    repairs: list[str] = []

    def swap(match: re.Match[str]) -> str:
        raw = match.group(0).strip(" ()")
        img_id = normalise_id(raw)
        if img_id in position:
            repairs.append(f"replaced {raw} in gen_prompt with '{ordinal_phrase(position[img_id])}'")
            return " " + ordinal_phrase(position[img_id]) + " "
        repairs.append(f"removed {raw} from gen_prompt (not a kept reference)")
        return " "

    return IMG_TOKEN.sub(swap, prompt), repairs


def _remap_ordinals(prompt: str, old_to_new: dict[int, int | None]) -> tuple[str, list[str]]:
    if all(old == new for old, new in old_to_new.items()):
        return prompt, []
    repairs: list[str] = []

    def remap(match: re.Match[str]) -> str:
        old = _ORDINAL_INDEX[match.group("ord").lower()]
        if old not in old_to_new:
            return match.group(0)
        new = old_to_new[old]
        if new is None:
            repairs.append(f"gen_prompt mentions the {ORDINAL_WORDS[old]} reference, which was dropped; phrase removed")
            return "the reference described in the text"
        if new != old:
            repairs.append(f"'{match.group(0)}' renumbered to '{ordinal_phrase(new)}'")
        return ordinal_phrase(new)

    return ORDINAL_PHRASE.sub(remap, prompt), repairs


def emitter(state: AgentState) -> dict[str, Any]:
    """A sync node: pure validation, no I/O."""
    ctx = current_context()
    answer = state.get("answer")
    if not answer:
        termination = state.get("termination") or "no_answer"
        error = state.get("error") or f"the policy gave no answer within {state.get('rounds', 0)} rounds"
        return {"program": None, "termination": termination, "error": error, "next_step": "__end__"}
    program, repairs, error = emit_program(answer, list(state.get("references") or []), ctx.n_max_reference_images,
                                           ctx.max_prompt_chars)
    if program is None:
        return {"program": None, "repairs": repairs, "termination": "answer_parse_failed", "error": error, "next_step": "__end__"}
    next_step = "review" if ctx.review_before_render else "render" if ctx.renderer != "none" else "__end__"
    return {"program": program, "repairs": repairs, "termination": "answer", "error": None, "next_step": next_step}


def route_after_emitter(state: AgentState) -> str:
    """Reads only the state, never the runtime: LangGraph also evaluates a node's routing
    outside any run, when ``update_state`` writes as that node (for example after
    ``interrupt_before=["render"]``), and no runtime exists there. The emitter decided."""
    next_step = state.get("next_step")
    if next_step:
        return next_step
    return "render" if state.get("program") is not None else "__end__"  # a checkpoint from before next_step
