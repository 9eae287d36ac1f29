"""Human review before rendering (context field ``review_before_render``).

After the emitter, the graph pauses with ``interrupt()`` and shows the reviewer the program,
the repairs made to it and every reference image the trajectory found. The run resumes with
``Command(resume=...)``:

- ``{"action": "approve"}`` renders the program as it is;
- ``{"action": "edit", "program": {"gen_prompt": ..., "reference_images": [{"img_id", "note"}]}}``
  runs the edited program through the binder and emitter rules (ids must name found images,
  at most ``n_max_reference_images``, ordinal phrases only); the repairs are recorded with an
  ``edit:`` prefix and the result is rendered;
- ``{"action": "reject"}`` (optionally with ``"reason"``) ends with termination ``rejected``
  and renders nothing.

The payload also carries LangChain v1's human-in-the-loop shape (``HITLRequest``), so chat
front-ends that render ``HumanInTheLoopMiddleware`` interrupts can review the program:
``action_requests`` holds one action, ``submit_program``, whose ``args`` are the program,
and ``review_configs`` allows ``approve``, ``edit`` and ``reject``. The matching resume value
``{"decisions": [decision]}`` maps onto the actions above:

- ``{"type": "approve"}`` = ``{"action": "approve"}``;
- ``{"type": "edit", "edited_action": {"name": "submit_program", "args": PROGRAM}}`` =
  ``{"action": "edit", "program": PROGRAM}``;
- ``{"type": "reject", "message": TEXT}`` = ``{"action": "reject", "reason": TEXT}``.

A resume value that is none of these, or an edit that cannot become a program, is not an
error of the run: the node asks again, with the problem in the payload's ``error``, so
nothing already done is lost.
"""

from __future__ import annotations

from typing import Any

from langgraph.config import get_config
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.types import interrupt

from genevolve_graph.core.context import AgentContext
from genevolve_graph.nodes.binder import bind_answer
from genevolve_graph.nodes.common import current_context
from genevolve_graph.nodes.emitter import emit_program
from genevolve_graph.core.protocol import answer_shape_problem
from genevolve_graph.core.state import AgentState, Program
from genevolve_graph.safety.protocol_tags import neutralize_data

ACTIONS = ("approve", "edit", "reject")
REVIEW_ACTION = "submit_program"
"""The action name of the HITL request: the program the agent wants to render."""
HOW_TO_RESUME = (
    "Resume with Command(resume={'action': 'approve'}), "
    "{'action': 'edit', 'program': {'gen_prompt': ..., 'reference_images': [{'img_id': 'IMG_001', 'note': ...}]}} "
    "or {'action': 'reject', 'reason': ...}."
)


def review_payload(state: AgentState, error: str = "") -> dict[str, Any]:
    """What the reviewer sees: JSON-safe, so it crosses the API server unchanged."""
    program: Program = state["program"]  # type: ignore[assignment]
    images = state.get("images") or {}
    payload: dict[str, Any] = {
        "kind": "review_program",
        "request": state.get("request", ""),
        "program": program.model_dump(mode="json"),
        "repairs": list(state.get("repairs") or []),
        "references": [images[i].model_dump(mode="json") for i in sorted(images)],
        "how_to_resume": HOW_TO_RESUME,
        # LangChain v1's HITLRequest shape (langchain.agents.middleware.human_in_the_loop).
        "action_requests": [{"name": REVIEW_ACTION, "args": program.model_dump(mode="json"),
                             "description": f"Review the program planned for: {state.get('request', '')}"[:2000]}],
        "review_configs": [{"action_name": REVIEW_ACTION, "allowed_decisions": list(ACTIONS)}],
    }
    if error:
        payload["error"] = error
    return payload


def from_hitl(value: Any) -> tuple[Any, str]:
    """A LangChain ``{"decisions": [...]}`` resume value as our ``{"action": ...}`` form
    (anything else is returned as it is); ``(None, problem)`` for a malformed one."""
    if not isinstance(value, dict) or "decisions" not in value:
        return value, ""
    decisions = value["decisions"]
    if not isinstance(decisions, list) or len(decisions) != 1 or not isinstance(decisions[0], dict):
        return None, f"'decisions' must be a list of one decision (one action was requested); got {decisions!r:.200}"
    decision = decisions[0]
    kind = decision.get("type")
    if kind == "approve":
        return {"action": "approve"}, ""
    if kind == "reject":
        return {"action": "reject", "reason": decision.get("message") or ""}, ""
    if kind == "edit":
        edited = decision.get("edited_action")
        if not isinstance(edited, dict) or not isinstance(edited.get("args"), dict):
            return None, "an edit decision needs 'edited_action': {'name': 'submit_program', 'args': {program}}"
        return {"action": "edit", "program": edited["args"]}, ""
    return None, f"decision type must be one of {', '.join(ACTIONS)}; got {kind!r:.50}"


def read_decision(value: Any, state: AgentState, ctx: AgentContext) -> tuple[dict[str, Any] | None, str]:
    """The state update a resume value asks for, or ``(None, problem)``."""
    value, problem = from_hitl(value)
    if problem:
        return None, problem
    if not isinstance(value, dict) or value.get("action") not in ACTIONS:
        return None, (f"the resume value must be a dict with 'action' one of {', '.join(ACTIONS)} "
                      f"(or {{'decisions': [{{'type': ...}}]}}); got {value!r:.200}")
    action = value["action"]
    if action == "approve":
        return {"review": {"action": "approve"}}, ""
    if action == "reject":
        reason = str(value.get("reason") or "").strip()
        error = "the reviewer rejected the program" + (f": {reason}" if reason else "")
        return {"review": {"action": "reject", "reason": reason}, "termination": "rejected", "error": error}, ""
    edited = neutralize_data(value.get("program"))  # the reviewer's text goes into the render prompt and the trajectory
    problem = answer_shape_problem(edited)
    if problem:
        return None, f"the edited program is not usable: {problem.replace('<answer>', 'program')}"
    bound, repairs = bind_answer(edited, state.get("images") or {})
    program, more, error = emit_program(edited, bound, ctx.n_max_reference_images, ctx.max_prompt_chars)
    repairs = [f"edit: {r}" for r in repairs + more]
    if program is None:
        return None, f"the edited program is not usable: {error}"
    return {"review": {"action": "edit"}, "program": program, "repairs": repairs}, ""


def review(state: AgentState) -> dict[str, Any]:
    """Wait for the reviewer (a sync node: ``interrupt`` needs no event loop)."""
    ctx = current_context()
    if not get_config().get("configurable", {}).get(CONFIG_KEY_CHECKPOINTER):
        # Without a saver the pause could never be resumed: say so instead of returning a
        # result that silently lacks its render.
        return {"termination": "error", "next_step": "__end__",
                "error": "review_before_render needs a checkpointer to pause and resume: compile with checkpointer=InMemorySaver() (or any saver)"}
    error = ""
    while True:  # each interrupt() call here consumes the next resume value
        update, error = read_decision(interrupt(review_payload(state, error)), state, ctx)
        if update is not None:
            break
    rejected = update.get("termination") == "rejected"
    update["next_step"] = "__end__" if rejected or ctx.renderer == "none" else "render"
    return update


def route_after_review(state: AgentState) -> str:
    """Reads only the state (see ``route_after_emitter``)."""
    return state.get("next_step") or "__end__"
