"""Messages in and out, for chat front-ends on the LangGraph API (issue 24, item 1).

A caller may start a run with ``{"messages": [...]}`` instead of ``{"request": ...}``: the
request is the last human message. The caller's messages stay in the ``messages`` channel
(a chat front-end shows them), and the policy's trajectory starts at the system prompt the
planner writes after them, so the policy reads exactly what a ``request`` run reads.

Such a run ends with one ``AIMessage`` that states the program (and the image's path or
URL when it was rendered), or why there is none. A ``request`` run gets no such message:
its trajectory ends with the policy's own answer, as the SFT export expects.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from genevolve_graph.core.protocol import CONTROL_KEY, new_id

SYSTEM_ID_PREFIX = "system-"
FINAL_REPLY_KEY = "genevolve_final_reply"
"""``additional_kwargs`` flag of the closing message, so exporters can tell it from the policy's turns."""


def _is_system_prompt(message: Any) -> bool:
    return isinstance(message, SystemMessage) and str(message.id or "").startswith(SYSTEM_ID_PREFIX)


def _is_callers(message: Any) -> bool:
    """A human turn of the caller (not the planner's request turn or a control message)."""
    return (isinstance(message, HumanMessage) and not str(message.id or "").startswith("request-")
            and CONTROL_KEY not in message.additional_kwargs)


def _is_final_reply(message: Any) -> bool:
    return isinstance(message, AIMessage) and bool(message.additional_kwargs.get(FINAL_REPLY_KEY))


def trajectory_start(state: dict[str, Any]) -> int | None:
    """Where the current trajectory begins in ``messages``; None when one must begin now.

    The planner records the index in ``trajectory_from``, a channel no caller can write (it
    is not part of the input schema), so a caller's own messages can never pass for a
    system prompt or a trajectory. A new trajectory begins on a fresh thread, and when the
    caller wrote again after the closing reply of a finished chat trajectory (the next turn
    of a chat thread)."""
    messages = list(state.get("messages") or [])
    start = state.get("trajectory_from")
    if start is None:  # threads recorded before the channel existed began with the planner's prompt
        return 0 if state.get("rounds") and messages and _is_system_prompt(messages[0]) else None
    if state.get("termination") and messages and _is_callers(messages[-1]) and any(_is_final_reply(m) for m in messages[start:]):
        return None
    return start


def is_chat_run(state: dict[str, Any]) -> bool:
    """The trajectory follows the caller's own messages (a ``{"messages": [...]}`` input)."""
    start = state.get("trajectory_from")
    if start is None:
        return bool(state.get("messages")) and not state.get("rounds")
    return start > 0


def chat_request(state: dict[str, Any]) -> str:
    """The last human message's text: the image request of a chat run."""
    for message in reversed(list(state.get("messages") or [])):
        if _is_callers(message):
            return text_of(message.content).strip()
    return ""


def policy_trajectory(values: dict[str, Any]) -> list[BaseMessage]:
    """The messages of the thread's last trajectory as the policy saw them, without the
    closing reply of a chat run: what training exports read (a ``request`` run's messages
    come back unchanged)."""
    messages = list(values.get("messages") or [])
    start = values.get("trajectory_from") or 0
    return [m for m in messages[start:] if not _is_final_reply(m)]


def fresh_trajectory(start: int, *, reset: bool) -> dict[str, Any]:
    """The state update that begins a trajectory at ``messages[start]``. ``reset`` (a chat's
    next turn, on a thread that held one) also clears that trajectory's results, keeping its
    messages so the chat keeps its history; a fresh thread's output gains no empty keys."""
    from langgraph.types import Overwrite

    if not reset:
        return {"trajectory_from": start}
    return {"trajectory_from": start, "rounds": 0, "tool_calls": 0, "answer": None, "references": None, "program": None,
            "render": None, "termination": None, "error": None, "review": None, "next_step": None, "guide": None,
            "backend_calls": {}, "repairs": Overwrite([]), "images": Overwrite({})}


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type", "text") == "text")


def final_reply(state: dict[str, Any]) -> AIMessage:
    """The closing message: the program (and image) or the reason there is none."""
    program, render = state.get("program"), state.get("render")
    if program is None or state.get("termination") not in (None, "answer"):
        text = f"No program: {state.get('termination') or 'error'}: {state.get('error') or 'no answer'}"
    else:
        lines = [f"Program: {program.gen_prompt}"]
        for index, ref in enumerate(program.reference_images, 1):
            where = ref.url or ref.local_path or ""
            lines.append(f"Reference {index}: {ref.note}" + (f" ({where})" if where else ""))
        if render is not None:
            if render.success:
                lines.append(f"Image: {render.output_path}")
            else:
                lines.append(f"Rendering failed: {render.error}")
        text = "\n".join(lines)
    return AIMessage(content=text, id=new_id("reply"), additional_kwargs={FINAL_REPLY_KEY: True})


def _closing(state: dict[str, Any], update: dict[str, Any], ends: bool) -> dict[str, Any]:
    if not ends or not is_chat_run(state):
        return update
    merged = {**state, **update}
    return {**update, "messages": [*update.get("messages", []), final_reply(merged)]}


def closes_chat(node: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """A sync node that may end the run (emitter, review): add the closing message when it does."""

    def wrapped(state: dict[str, Any]) -> dict[str, Any]:
        update = node(state)
        return _closing(state, update, update.get("next_step") == "__end__")

    wrapped.__name__ = getattr(node, "__name__", "node")
    return wrapped


def acloses_chat(node: Callable[[Any], Awaitable[dict[str, Any]]]) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    """An async node that always ends the run (render)."""

    async def wrapped(state: dict[str, Any]) -> dict[str, Any]:
        return _closing(state, await node(state), True)

    return wrapped
