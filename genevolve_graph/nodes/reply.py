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


def trajectory_start(messages: list[BaseMessage]) -> int:
    """Index of the current trajectory's system prompt; ``len(messages)`` when a trajectory
    must start: the caller's chat messages are all there is so far, or the caller wrote again
    after the closing reply of the last trajectory (the next turn of a chat thread)."""
    starts = [index for index, message in enumerate(messages) if _is_system_prompt(message)]
    if not starts:
        return len(messages)
    last = starts[-1]
    closed = any(_is_final_reply(m) for m in messages[last:])
    if closed and messages and _is_callers(messages[-1]):
        return len(messages)
    return last


def policy_trajectory(messages: list[BaseMessage]) -> list[BaseMessage]:
    """The messages of the thread's last trajectory as the policy saw them: from its system
    prompt, without the closing reply of a chat run (what training exports must read; a
    ``request`` run's messages come back unchanged)."""
    starts = [index for index, message in enumerate(messages) if _is_system_prompt(message)]
    if not starts:
        return list(messages)
    return [m for m in messages[starts[-1]:] if not _is_final_reply(m)]


def continues_chat(messages: list[BaseMessage]) -> bool:
    """A new trajectory begins on a thread that already holds one (a chat's next turn)."""
    return trajectory_start(messages) == len(messages) and any(_is_system_prompt(m) for m in messages)


def fresh_trajectory() -> dict[str, Any]:
    """The state update that clears the previous trajectory's results for a chat's next turn
    (its messages stay, so the chat keeps its history)."""
    from langgraph.types import Overwrite

    return {"rounds": 0, "tool_calls": 0, "answer": None, "references": None, "program": None, "render": None,
            "termination": None, "error": None, "review": None, "next_step": None, "guide": None, "backend_calls": {},
            "repairs": Overwrite([]), "images": Overwrite({})}


def is_chat_run(messages: list[BaseMessage]) -> bool:
    """The run began with the caller's messages rather than a ``request``."""
    return bool(messages) and not _is_system_prompt(messages[0])


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type", "text") == "text")


def chat_request(messages: list[BaseMessage]) -> str:
    """The last human message's text: the image request of a chat run."""
    for message in reversed(messages[: trajectory_start(messages)]):
        if isinstance(message, HumanMessage):
            return text_of(message.content).strip()
    return ""


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
    if not ends or not is_chat_run(list(state.get("messages") or [])):
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
