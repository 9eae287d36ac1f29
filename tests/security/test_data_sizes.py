"""Sizes that arrive inside data are bounded: a reference note, a policy (teacher) reply.

A 5 MB ``note`` in an answer is cut (a recorded repair) and refused by the render graph; a
reply far longer than ``max_tokens`` could produce (an endpoint that ignores it) ends the
trajectory with an error and is not kept, so no later stage (``data build``'s stages,
``export``) copies megabytes. Server replies: tests/security/test_server_replies.py.
"""

from __future__ import annotations


from genevolve_graph import AgentContext
from genevolve_graph.core.state import MAX_NOTE_CHARS, Reference
from genevolve_graph.nodes.emitter import emit_program

from ..scripts import answer

HUGE_NOTE = "fur detail " * 500_000  # 5.5 MB


def test_a_huge_note_is_cut_with_a_repair():
    ref = Reference(img_id="IMG_001", local_path="/x.png", note=HUGE_NOTE)
    program, repairs, error = emit_program({"gen_prompt": "A fox as in the first reference image."}, [ref], 2)
    assert error == "" and program is not None
    assert len(program.reference_images[0].note) <= MAX_NOTE_CHARS and program.reference_images[0].note.startswith("fur detail")
    assert any(r.startswith(f"cut the note of IMG_001 from {len(HUGE_NOTE)} to ") for r in repairs), repairs


def test_the_render_graph_refuses_a_huge_note(tmp_path, monkeypatch):
    from genevolve_graph.serving.render_graph import render_graph

    monkeypatch.setenv("GENEVOLVE_RENDERS_DIR", str(tmp_path))
    monkeypatch.setenv("GENEVOLVE_ALLOWED_ROOTS", str(tmp_path))
    program = {"gen_prompt": "p", "reference_images": [{"img_id": "IMG_001", "note": HUGE_NOTE}]}
    result = render_graph.invoke({"program": program, "row_id": "r"}, {"configurable": {"thread_id": "t"}}, context={"renderer": "preview"})
    assert result["render"].success is False and f"at most {MAX_NOTE_CHARS} are accepted" in result["render"].error
    assert not list(tmp_path.rglob("*.png"))


async def test_a_policy_reply_beyond_max_tokens_is_not_kept(scripted_server, tmp_path):
    from genevolve_graph.agent.runner import run_with_saver
    from genevolve_graph.persistence import open_checkpointer

    request = "a red fox in fresh snow"
    runaway = answer("A red fox. " + "x" * 2_000_000)  # 2 MB where max_tokens=1024 allows about 64 KB
    server = scripted_server({request: [runaway]})
    ctx = AgentContext(policy="openai", base_url=server.base_url, model="m", renderer="none", max_tokens=1024,
                       output_dir=str(tmp_path))
    db = tmp_path / "trace.sqlite"
    async with open_checkpointer(f"sqlite:///{db}") as saver:
        result = await run_with_saver(request, ctx, saver, thread_id="t")
    assert result.termination == "error" and "ignored max_tokens" in result.error and "2,0" in result.error
    assert all(len(str(m.content)) < 100_000 for m in result.messages)
    recorded = sum(p.stat().st_size for p in tmp_path.glob("trace.sqlite*"))
    assert recorded < 1_000_000  # nothing of the reply recorded
