"""LangChain v1's human-in-the-loop shape for the review interrupt (issue 24, item 2):
the payload carries ``action_requests``/``review_configs`` and ``{"decisions": [...]}``
resumes it; ``{"action": ...}`` stays an accepted alias."""

from __future__ import annotations

from langgraph.types import Command

from .test_review import REQUEST, start


def test_the_interrupt_is_a_hitl_request_with_the_program_as_arguments(tmp_path):
    _, _, _, out = start(tmp_path)
    payload = out.interrupts[0].value
    [action] = payload["action_requests"]
    assert action["name"] == "submit_program" and action["args"] == payload["program"]
    assert REQUEST in action["description"]
    assert payload["review_configs"] == [{"action_name": "submit_program", "allowed_decisions": ["approve", "edit", "reject"]}]


def test_approve_decision_renders(tmp_path):
    graph, config, context, _ = start(tmp_path)
    final = graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config, context=context)
    assert final["termination"] == "answer" and final["render"].success and final["review"] == {"action": "approve"}


def test_edit_decision_uses_the_edited_arguments(tmp_path):
    graph, config, context, out = start(tmp_path)
    args = {"gen_prompt": "A plain poster of the Eiffel Tower from the first reference image, title \"PARIS\".",
            "reference_images": [{"img_id": "IMG_001", "note": "tower"}]}
    final = graph.invoke(Command(resume={"decisions": [{"type": "edit", "edited_action": {"name": "submit_program", "args": args}}]}),
                         config, context=context)
    assert final["program"].gen_prompt == args["gen_prompt"] and final["review"] == {"action": "edit"}


def test_reject_decision_keeps_its_message(tmp_path):
    graph, config, context, _ = start(tmp_path)
    final = graph.invoke(Command(resume={"decisions": [{"type": "reject", "message": "wrong tower"}]}), config, context=context)
    assert final["termination"] == "rejected" and "wrong tower" in final["error"] and final.get("render") is None


def test_a_malformed_decision_asks_again_with_the_problem(tmp_path):
    graph, config, context, _ = start(tmp_path)
    again = graph.invoke(Command(resume={"decisions": [{"type": "respond"}]}), config, context=context, version="v2")
    assert "decision type must be one of approve, edit, reject" in again.interrupts[0].value["error"]
    final = graph.invoke(Command(resume={"action": "approve"}), config, context=context)  # the old form still works
    assert final["termination"] == "answer"
