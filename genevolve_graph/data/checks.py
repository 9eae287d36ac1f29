"""Programmatic checks of a teacher trajectory, each named and counted.

They run on the stage-1 record (the messages exactly as the teacher received them, the
program after the emitter, its repairs). The raw answer matters as much as the program:
SFT trains on the messages, so an answer that leaked a URL is a bad example even when the
emitter repaired the program.

| check | drops a trajectory when |
|---|---|
| ``incomplete_tool_cycle`` | a teacher turn is neither a valid tool call nor an answer, a tool call has no observation after it, or the last turn is not a parsable answer |
| ``invalid_reference`` | the answer cites an id no image search returned, the emitter had to drop or re-order references, or a reference's local file is missing |
| ``url_or_id_leak`` | the answer's ``gen_prompt`` holds a URL or an ``IMG_###`` id |
| ``missing_ordinal_binding`` | a reference is never named by its ordinal ("the first reference image"), or the prompt names an ordinal with no reference |
| ``over_simple_program`` | fewer tool calls than ``min_tool_calls``, a prompt shorter than ``min_prompt_words`` words, or (``require_reference``) no reference |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from genevolve_graph.data.recipes import FilterConfig

CHECKS = ("incomplete_tool_cycle", "invalid_reference", "url_or_id_leak", "missing_ordinal_binding", "over_simple_program")


def sft_view(record: dict[str, Any]) -> Any:
    """The record's messages as an ``SFTRecord`` (text or native protocol)."""
    from genevolve_graph.training.sft_data import SFTRecord

    return SFTRecord(messages=record.get("messages") or [{"role": "user", "content": record.get("question") or ""}])


def raw_answer(record: dict[str, Any]) -> dict[str, Any] | None:
    from genevolve_graph.training.sft_data import final_answer

    try:
        answer, _ = final_answer(sft_view(record))
    except ValueError:
        return None
    return answer


def _incomplete_tool_cycle(record: dict[str, Any], config: FilterConfig) -> str:
    from genevolve_graph.core.protocol import parse_reply
    from genevolve_graph.training.sft_data import final_answer

    try:
        view = sft_view(record)
    except ValueError as exc:
        return f"the messages cannot be read ({str(exc).splitlines()[0]})"
    messages = view.messages
    for index, message in enumerate(messages[:-1]):
        if message.role != "assistant":
            continue
        if message.tool_calls:
            calls = True
        else:
            kind = parse_reply(message.text()).kind
            if kind not in ("tool_call", "answer"):
                return f"message {index} is neither a valid tool call nor an answer (a format error was needed)"
            calls = kind == "tool_call"
        nxt = messages[index + 1]
        observed = nxt.role == "tool" or (nxt.role == "user" and "<tool_response>" in nxt.text())
        if calls and not observed:
            return f"the tool call of message {index} has no observation after it"
    answer, why = final_answer(view)
    if answer is None:
        return why
    if record.get("termination") != "answer":
        return f"the trajectory ended with termination {record.get('termination')!r}"
    return ""


def _invalid_reference(record: dict[str, Any], config: FilterConfig) -> str:
    from genevolve_graph.training.sft_data import cited_image_ids, returned_image_ids

    answer = raw_answer(record)
    if answer is not None:
        returned = returned_image_ids(sft_view(record))
        missing = [i for i in cited_image_ids(answer) if i not in returned]
        if missing:
            return f"the answer cites {', '.join(missing)}, which no image search returned"
    for repair in record.get("repairs") or []:
        if repair.startswith(("kept the first", "sorted references", "removed IMG")) or "not a kept reference" in repair or "was dropped" in repair:
            return f"the emitter had to fix the references: {repair}"
    for ref in record.get("reference_images") or []:
        path = ref.get("local_path")
        if not path or not Path(path).is_file():
            return f"reference {ref.get('img_id')} has no local image file ({path or 'no local_path'})"
    return ""


def _url_or_id_leak(record: dict[str, Any], config: FilterConfig) -> str:
    from genevolve_graph.nodes.emitter import IMG_TOKEN, URL_TOKEN

    answer = raw_answer(record) or {}
    for text in (str(answer.get("gen_prompt") or ""), str(record.get("gen_prompt") or "")):
        url = URL_TOKEN.search(text)
        if url:
            return f"gen_prompt holds a URL ({url.group(0).strip()[:80]})"
        img = IMG_TOKEN.search(text)
        if img:
            return f"gen_prompt holds an image id ({img.group(0).strip()})"
    return ""


def _missing_ordinal_binding(record: dict[str, Any], config: FilterConfig) -> str:
    from genevolve_graph.nodes.emitter import ORDINAL_PHRASE, ORDINAL_WORDS, _ORDINAL_INDEX

    prompt = str(record.get("gen_prompt") or "")
    count = len(record.get("reference_images") or [])
    named = {_ORDINAL_INDEX[m.group("ord").lower()] for m in ORDINAL_PHRASE.finditer(prompt)}
    unbound = [i for i in range(count) if i not in named]
    if unbound:
        return f"the {ORDINAL_WORDS[unbound[0]]} reference image is never named in gen_prompt"
    extra = sorted(i for i in named if i >= count)
    if extra:
        return f"gen_prompt names the {ORDINAL_WORDS[extra[0]]} reference image, but the program has {count} reference(s)"
    return ""


def _over_simple_program(record: dict[str, Any], config: FilterConfig) -> str:
    calls = int(record.get("tool_calls") or 0)
    if calls < config.min_tool_calls:
        return f"{calls} tool call(s); at least {config.min_tool_calls} required"
    words = len(str(record.get("gen_prompt") or "").split())
    if words < config.min_prompt_words:
        return f"gen_prompt has {words} words; at least {config.min_prompt_words} required"
    if config.require_reference and not record.get("reference_images"):
        return "the program has no reference image"
    return ""


CHECK_FUNCTIONS: dict[str, Callable[[dict[str, Any], FilterConfig], str]] = {
    "incomplete_tool_cycle": _incomplete_tool_cycle,
    "invalid_reference": _invalid_reference,
    "url_or_id_leak": _url_or_id_leak,
    "missing_ordinal_binding": _missing_ordinal_binding,
    "over_simple_program": _over_simple_program,
}


def run_checks(record: dict[str, Any], config: FilterConfig) -> dict[str, str]:
    """``{check: problem}`` for every check that fails (empty when all pass), in check order."""
    failed: dict[str, str] = {}
    for name in CHECKS:
        problem = CHECK_FUNCTIONS[name](record, config)
        if problem:
            failed[name] = problem
    return failed
