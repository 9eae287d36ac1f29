"""Human review before rendering, and routing that never needs a runtime."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from genevolve_graph import AgentContext, Program, build_graph

REQUEST = 'A 1990s travel-magazine cover in front of the Eiffel Tower, title "PARIS"'


def start(tmp_path, **ctx):
    graph = build_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "review"}}
    context = AgentContext(review_before_render=True, output_dir=str(tmp_path), **ctx)
    out = graph.invoke({"request": REQUEST}, config, context=context, version="v2")
    return graph, config, context, out


def test_update_state_after_interrupt_before_render_does_not_need_a_runtime(tmp_path):
    """Regression: routing after the emitter called get_runtime(), which is None inside
    update_state, so editing a paused thread crashed."""
    graph = build_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    context = AgentContext(output_dir=str(tmp_path))
    graph.invoke({"request": REQUEST}, config, context=context, interrupt_before=["render"])
    snapshot = graph.get_state(config)
    assert snapshot.next == ("render",)
    edited = snapshot.values["program"].model_copy(update={"gen_prompt": "A plain poster of the Eiffel Tower."})
    graph.update_state(config, {"program": edited})
    assert graph.get_state(config).next == ("render",)
    final = graph.invoke(None, config, context=context)
    assert final["program"].gen_prompt == "A plain poster of the Eiffel Tower." and final["render"].success


def test_review_interrupts_with_program_repairs_and_references(tmp_path):
    graph, config, _, out = start(tmp_path)
    [pending] = out.interrupts
    payload = pending.value
    assert payload["kind"] == "review_program" and payload["request"] == REQUEST
    assert payload["program"]["gen_prompt"] and payload["program"]["reference_images"][0]["img_id"] == "IMG_001"
    assert isinstance(payload["repairs"], list)
    assert [r["img_id"] for r in payload["references"]][:1] == ["IMG_001"] and payload["references"][0]["local_path"]
    assert graph.get_state(config).next == ("review",)
    assert "render" not in out.value  # nothing rendered yet


def test_approve_renders_the_program_as_it_is(tmp_path):
    graph, config, context, out = start(tmp_path)
    program = out.value["program"]
    final = graph.invoke(Command(resume={"action": "approve"}), config, context=context)
    assert final["program"] == program and final["render"].success and final["termination"] == "answer"
    assert final["review"] == {"action": "approve"}


def test_edit_goes_through_the_emitter_rules_and_renders(tmp_path):
    graph, config, context, out = start(tmp_path)
    edited = {"gen_prompt": "A poster: the tower from IMG_001 under snow, title \"PARIS\", see https://example.com/x",
              "reference_images": [{"img_id": "img_1", "note": "the tower"}, {"img_id": "IMG_099", "note": "missing"}]}
    final = graph.invoke(Command(resume={"action": "edit", "program": edited}), config, context=context)
    program: Program = final["program"]
    assert program.gen_prompt.startswith("A poster: the tower from the first reference image under snow")
    assert "http" not in program.gen_prompt and [r.img_id for r in program.reference_images] == ["IMG_001"]
    assert program.reference_images[0].note == "the tower" and program.reference_images[0].local_path
    edits = [r for r in final["repairs"] if r.startswith("edit: ")]
    assert any("IMG_099" in r for r in edits) and any("normalised reference id 'img_1'" in r for r in edits)
    assert any("removed URLs" in r for r in edits)
    assert final["review"] == {"action": "edit"} and final["render"].success


def test_reject_ends_with_rejected_and_renders_nothing(tmp_path):
    graph, config, context, _ = start(tmp_path)
    final = graph.invoke(Command(resume={"action": "reject", "reason": "wrong landmark"}), config, context=context)
    assert final["termination"] == "rejected" and final.get("render") is None
    assert final["error"] == "the reviewer rejected the program: wrong landmark"
    assert not list(tmp_path.glob("*.png")) and graph.get_state(config).next == ()


@pytest.mark.parametrize(
    "resume, problem",
    [
        ({"action": "publish"}, "'action' one of approve, edit, reject"),
        ("yes", "must be a dict"),
        ({"action": "edit", "program": {"gen_prompt": ""}}, "needs a non-empty 'gen_prompt'"),
        ({"action": "edit", "program": {"gen_prompt": "IMG_001", "reference_images": []}}, "gen_prompt is empty"),
    ],
)
def test_a_bad_resume_value_asks_again_and_loses_nothing(tmp_path, resume, problem):
    graph, config, context, _ = start(tmp_path)
    again = graph.invoke(Command(resume=resume), config, context=context, version="v2")
    [pending] = again.interrupts
    assert problem in pending.value["error"] and pending.value["program"]["gen_prompt"]
    final = graph.invoke(Command(resume={"action": "approve"}), config, context=context)
    assert final["render"].success


def test_review_without_a_renderer_ends_after_approval(tmp_path):
    graph, config, context, _ = start(tmp_path, renderer="none")
    final = graph.invoke(Command(resume={"action": "approve"}), config, context=context)
    assert final["termination"] == "answer" and final.get("render") is None


def test_review_without_a_checkpointer_says_what_is_missing():
    out = build_graph().invoke({"request": REQUEST}, context=AgentContext(review_before_render=True, renderer="none"))
    assert out["termination"] == "error" and out["error"].startswith("review_before_render needs a checkpointer")
    assert out["program"] is not None and "__interrupt__" not in out  # the program is kept
