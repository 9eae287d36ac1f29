"""``export_threads``: byte identity with the policy's HTTP requests, both formats, both protocols,
the filters, scrubbing, and bad threads reported and skipped (memory, SQLite, Postgres)."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from pathlib import Path

import pytest

from genevolve_graph import build_graph
from genevolve_graph.persistence import open_checkpointer, open_checkpointer_sync
from genevolve_graph.prompts import FINAL_STEP
from genevolve_graph.core.protocol import native_tool_schemas, tools_block
from genevolve_graph.agent.runner import run_with_saver
from genevolve_graph.training.export import (
    ExportError,
    ExportFilters,
    ExportReport,
    ScoreTable,
    export_threads,
    list_threads,
)
from genevolve_graph.training.sft_data import parse_record, record_problems

from ..scripts import PARIS, PARIS_SCRIPT, answer, tool
from .helpers import record

def result_images(result) -> dict[str, str]:
    """IMG id -> local path, from the image search observations of a run."""
    found = {}
    for message in result.messages:
        for img_id, path in re.findall(r"^(IMG_\d{3}): title: .*\n  url: .*\n  local_path: (.*)$", str(message.content), re.M):
            found[img_id] = path
    return found


FOX = "a red fox in fresh snow"
FOX_SCRIPT = [tool("image_search", "Find a fox.", query="red fox", top_k=2), answer("A red fox from the first reference image in snow.", [("IMG_001", "fur colour")])]


@contextlib.contextmanager
def reading(url: str, saver=None):
    """A sync saver on the same storage (memory: the saver the runs used)."""
    if url == "memory":
        yield saver
    else:
        with open_checkpointer_sync(url) as sync_saver:
            yield sync_saver


PARIS_MORE = PARIS_SCRIPT[:3] + [tool("image_search", "More references.", query="lighthouse bicycle teapot", top_k=3)] + PARIS_SCRIPT[3:]


async def test_sft_export_is_byte_identical_to_the_requests(checkpoint_url, scripted_server, make_ctx, tmp_path, thread_id):
    server = scripted_server({PARIS: PARIS_MORE})
    ctx = make_ctx(server)
    async with open_checkpointer(checkpoint_url) as saver:
        result = await run_with_saver(PARIS, ctx, saver, thread_id=thread_id, row_id="row-7")
        assert result.termination == "answer", result.error
        with reading(checkpoint_url, saver) as sync_saver:
            report = ExportReport()
            records = list(export_threads(sync_saver, thread_ids=[thread_id], images_dir=tmp_path / "data" / "images", report=report))
    assert report.problems == [] and report.exported == 1
    (rec,) = records
    exported = rec.to_json()["messages"]
    last_body = server.successful_bodies()[-1]["messages"]
    # Everything the policy received on its last request, byte for byte (JSON key order aside) ...
    assert json.dumps(exported[:-1], ensure_ascii=False, sort_keys=True) == json.dumps(last_body, ensure_ascii=False, sort_keys=True)
    assert [m["content"].encode() for m in exported[:-1]] == [m["content"].encode() for m in last_body]
    # ... and what it produced: the last scripted reply.
    assert exported[-1] == {"role": "assistant", "content": PARIS_MORE[-1]}
    assert exported[0]["role"] == "system" and tools_block() in exported[0]["content"]
    assert exported[-1]["content"].count("<answer>") == 1
    # Images: every image_search result in IMG order, copied and referenced relative to the data root.
    observations = "\n".join(m["content"] for m in exported if "--- image search result for [" in m["content"])
    returned = re.findall(r"^(IMG_\d{3}): title:", observations, re.M)
    assert rec.meta["image_ids"] == sorted(set(returned)) and len(returned) >= 3
    assert rec.meta["references"] == ["IMG_001"] and rec.meta["row_id"] == "row-7" and rec.meta["experiment"] == "exp-a"
    assert len(rec.images) == len(rec.meta["image_ids"]) and all(p.startswith("images/") for p in rec.images)
    data_root = tmp_path / "data"
    registry = result_images(result)
    for image, img_id in zip(rec.images, rec.meta["image_ids"]):
        assert (data_root / image).read_bytes() == Path(registry[img_id]).read_bytes()
    assert record_problems(rec, data_root) == []


async def test_control_messages_are_exported_where_they_occurred(scripted_server, make_ctx, tmp_path):
    script = ["I would draw a fox.", tool("search", queries=["red fox winter coat"]), answer("A red fox in fresh snow.")]
    server = scripted_server({FOX: script})
    async with open_checkpointer("memory") as saver:
        result = await run_with_saver(FOX, make_ctx(server, max_rounds=3), saver, thread_id="ctl")
        assert result.termination == "answer", result.error
        (rec,) = export_threads(saver, images_dir=tmp_path / "images")
    exported = rec.to_json()["messages"]
    sent = server.successful_bodies()[-1]["messages"]
    assert exported[:-1] == sent and exported[-1] == {"role": "assistant", "content": script[-1]}
    assert "could not be used" in exported[3]["content"] and exported[-2]["content"] == FINAL_STEP
    assert rec.images == [] and rec.meta["image_ids"] == []


async def test_trl_export_native_protocol_keeps_tool_calls_and_tools(scripted_server, make_ctx, tmp_path):
    script = [
        {"content": "", "tool_calls": [{"id": "call_a", "name": "image_search", "arguments": {"query": "emperor penguin", "top_k": 1}}]},
        {"content": "", "tool_calls": [{"id": "call_b", "name": "search", "arguments": {"queries": ["emperor penguin size"]}}]},
        '{"gen_prompt": "Exactly three emperor penguins on sea ice, as in the first reference image.", "reference_images": [{"img_id": "IMG_001", "note": "plumage"}]}',
    ]
    server = scripted_server({"penguin": script})
    ctx = make_ctx(server, protocol="native")
    async with open_checkpointer("memory") as saver:
        result = await run_with_saver("three emperor penguins", ctx, saver, thread_id="peng")
        assert result.termination == "answer", result.error
        (trl,) = export_threads(saver, format="trl")
        (sft,) = export_threads(saver, format="sft", images_dir=tmp_path / "d" / "images")
    bodies = server.successful_bodies()
    assert bodies[-1]["tools"] and [t["function"]["name"] for t in bodies[-1]["tools"]] == [t["function"]["name"] for t in native_tool_schemas()]
    # trl: the native messages as sent (tool_calls, tool role), the final reply, and the tool schemas.
    row = trl.trl_row()
    assert json.loads(row["tools"]) == native_tool_schemas()
    sent = bodies[-1]["messages"]
    assert [m["role"] for m in row["messages"][:-1]] == [m["role"] for m in sent]
    assert row["messages"][2]["tool_calls"][0]["function"]["name"] == "image_search"
    assert row["messages"][3] == {"role": "tool", "content": sent[3]["content"], "tool_call_id": "call_a"}
    assert row["messages"][-1] == {"role": "assistant", "content": script[-1]}
    # The row reads back (tools as a JSON string) and validates: bare-JSON answer, IMG ids from the tool turn.
    parsed, problem = parse_record(json.loads(json.dumps(row)))
    assert problem == "" and parsed.tools == native_tool_schemas() and record_problems(parsed, None) == []
    # sft: the same trajectory in the text protocol.
    messages = sft.to_json()["messages"]
    assert tools_block() in messages[0]["content"] and "provided through the API" not in messages[0]["content"]
    assert messages[2] == {"role": "assistant", "content": '<tool_call>{"name": "image_search", "arguments": {"query": "emperor penguin", "top_k": 1}}</tool_call>'}
    assert messages[3]["role"] == "user" and messages[3]["content"].startswith("<tool_response>\n--- image search result for [emperor penguin]")
    assert messages[-1]["content"].startswith("<answer>{") and messages[-1]["content"].endswith("}</answer>")
    assert "tools" not in sft.to_json()
    assert record_problems(sft, tmp_path / "d") == []


async def test_filters_termination_rounds_scores_and_dedupe(scripted_server, make_ctx, tmp_path):
    server = scripted_server({
        PARIS: PARIS_SCRIPT,
        FOX: FOX_SCRIPT,
        "an owl": ["hmm"] * 3,
        "a lighthouse": [tool("search", queries=["lighthouse"]), tool("search", queries=["cliff"]), answer("a lighthouse on a cliff")],
    })
    url = f"sqlite:///{tmp_path / 'trace.sqlite'}"
    ctx = make_ctx(server, max_rounds=3)
    await record(url, make_ctx(server), [("paris", PARIS)])
    await record(url, ctx, [("fox-1", FOX), ("fox-2", FOX), ("owl", "an owl"), ("light", "a lighthouse")])
    await record(url, make_ctx(server, experiment="exp-b"), [("fox-b", FOX)])
    eval_file = tmp_path / "results_eval.jsonl"
    rows = [
        {"id": "x", "thread_id": "fox-1", "status": "scored", "scores": {"overall": 0.4}},
        {"id": "x2", "thread_id": "fox-2", "status": "scored", "scores": {"overall": 0.9}},
        {"id": "p", "prompt": PARIS, "status": "scored", "scores": {"overall": 0.7}},
        {"id": "l", "thread_id": "light", "status": "failed", "scores": None},
        {"summary_type": "overall", "overall": 0.5},
    ]
    eval_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    scores = ScoreTable.load(eval_file)

    def run(**kwargs):
        report = ExportReport()
        with open_checkpointer_sync(url) as saver:
            ids = [r.meta["thread_id"] for r in export_threads(saver, report=report, **kwargs)]
        return ids, report

    assert run(filters=ExportFilters(dedupe=False))[0] == ["paris", "fox-1", "fox-2", "light", "fox-b"]
    ids, report = run()
    assert ids == ["paris", "fox-1", "light"]  # the owl never answered; fox-2 and fox-b repeat fox-1's prompt
    assert report.filtered == {"termination=no_answer": 1, "duplicate prompt": 2} and report.threads == 6
    assert run(experiment="exp-b")[0] == ["fox-b"]
    assert run(filters=ExportFilters(terminations=None, dedupe=False), experiment="exp-a")[0] == ["paris", "fox-1", "fox-2", "owl", "light"]
    assert run(filters=ExportFilters(terminations=("no_answer",)))[0] == ["owl"]
    assert run(filters=ExportFilters(min_rounds=3))[0] == ["paris", "light"]
    assert run(filters=ExportFilters(max_rounds=2, dedupe=False))[0] == ["fox-1", "fox-2", "fox-b"]
    # With scores, de-duplication keeps the best-scored thread of a prompt.
    assert run(scores=scores)[0] == ["paris", "fox-2", "light"]
    ids, report = run(scores=scores, filters=ExportFilters(min_overall=0.5))
    assert ids == ["paris", "fox-2"]
    assert report.filtered["overall<0.5"] == 1 and report.filtered["without a score"] == 1 and report.filtered["not in the evaluation file"] == 1
    with open_checkpointer_sync(url) as saver:
        (best,) = export_threads(saver, thread_ids=["fox-2"], scores=scores)
        assert best.meta["overall"] == 0.9
        with pytest.raises(ExportError, match="evaluation file"):
            next(export_threads(saver, filters=ExportFilters(min_overall=0.5)))
        assert list_threads(saver, experiment="exp-a") == ["paris", "fox-1", "fox-2", "owl", "light"]


async def test_secrets_and_home_paths_are_scrubbed(scripted_server, make_ctx, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "zzsecretvalue123456")
    leaky = (
        "Use header Authorization: Bearer abcdefghijklmnop1234 and key sk-proj-ABCDEFGHIJKLMNOPQRSTUV123456; "
        "my file is /home/alice/refs/fox.png; see https://api.example.com/img?key=AIzaSyA1234567890abcdefghijklmnopqrstuv&w=1; "
        "the service token is zzsecretvalue123456."
    )
    server = scripted_server({FOX: [tool("search", leaky, queries=["red fox"]), answer("A red fox in snow.")]})
    async with open_checkpointer("memory") as saver:
        await run_with_saver(FOX, make_ctx(server), saver, thread_id="leak")
        (rec,) = export_threads(saver, format="trl")
        (raw,) = export_threads(saver, format="trl", scrub=False)
    text = json.dumps(rec.trl_row())
    for secret in ("abcdefghijklmnop1234", "sk-proj-ABCDEFGHIJKLMNOPQRSTUV123456", "AIzaSyA1234567890abcdefghijklmnopqrstuv", "zzsecretvalue123456", "/home/alice"):
        assert secret not in text
        assert secret in json.dumps(raw.trl_row())
    assert "Authorization: Bearer [REDACTED]" in text and "~/refs/fox.png" in text and "?key=[REDACTED]&w=1" in text
    # Nothing else changed: the scrubbed reply differs from the raw one only where secrets were.
    assert rec.messages[2].content.replace("[REDACTED]", "") == (
        raw.messages[2].content.replace("abcdefghijklmnop1234", "").replace("sk-proj-ABCDEFGHIJKLMNOPQRSTUV123456", "")
        .replace("AIzaSyA1234567890abcdefghijklmnopqrstuv", "").replace("zzsecretvalue123456", "").replace("/home/alice/", "~/")
    )


async def test_corrupt_unfinished_and_imageless_threads_are_reported_and_skipped(scripted_server, make_ctx, tmp_path, image_dir):
    server = scripted_server({PARIS: PARIS_SCRIPT, FOX: FOX_SCRIPT, "a lighthouse": [tool("search", queries=["x"]), answer("a lighthouse")],
                              "a teapot": [tool("image_search", query="teapot", top_k=1), answer("a teapot as in the first reference image", [("IMG_001", "shape")])],
                              "a bicycle": [answer("a bicycle")], "a robot": [answer("a robot")]})
    db = tmp_path / "trace.sqlite"
    url = f"sqlite:///{db}"
    ctx = make_ctx(server)
    await record(url, ctx, [("good", PARIS), ("bad-writes", FOX), ("bad-latest", "a lighthouse"), ("teapot", "a teapot")])
    async with open_checkpointer(url) as saver:
        graph = build_graph(saver)
        # A run killed after its first tool call: no termination.
        await graph.ainvoke({"request": "a bicycle"}, {"configurable": {"thread_id": "killed"}}, context=ctx, interrupt_after=["planner"])
        # A run stopped before rendering: termination set, but the render node is still pending.
        await graph.ainvoke({"request": "a robot"}, {"configurable": {"thread_id": "no-render"}},
                            context=ctx.with_updates(renderer="preview"), interrupt_before=["render"])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE writes SET value = ? WHERE thread_id = 'bad-writes' AND channel = 'messages'", (b"\xc1\x00garbage",))
        latest = conn.execute("SELECT MAX(checkpoint_id) FROM checkpoints WHERE thread_id = 'bad-latest'").fetchone()[0]
        conn.execute("UPDATE checkpoints SET checkpoint = ? WHERE thread_id = 'bad-latest' AND checkpoint_id = ?", (b"\xde\xad\xbe\xef", latest))
    teapot_image = next(image_dir.glob("teapot.png"))
    teapot_image.unlink()
    seen: list[str] = []
    report = ExportReport()
    with open_checkpointer_sync(url) as saver:
        records = list(export_threads(saver, images_dir=tmp_path / "out" / "images", report=report, on_problem=lambda t, p: seen.append(t)))
    assert [r.meta["thread_id"] for r in records] == ["good"]
    problems = dict(report.problems)
    assert set(problems) == {"bad-writes", "bad-latest", "teapot", "killed", "no-render"} and seen == [t for t, _ in report.problems]
    assert problems["bad-writes"].startswith("unreadable checkpoint")
    assert problems["bad-latest"].startswith("unreadable checkpoint")
    assert problems["killed"].startswith("unfinished")
    assert problems["no-render"].startswith("unfinished: next node(s) render")
    assert "IMG_001 is missing" in problems["teapot"] and "teapot.png" in problems["teapot"]
    assert report.exported == 1 and report.threads == 6


def test_a_chat_run_exports_the_same_trajectory_as_a_request_run(tmp_path):
    """Issue 24: a ``{"messages": [...]}`` run keeps the caller's chat and a closing reply in its
    messages; the export reads only the trajectory the policy saw."""
    from langgraph.checkpoint.memory import InMemorySaver

    from genevolve_graph import create_genevolve_agent

    saver = InMemorySaver()
    agent = create_genevolve_agent(checkpointer=saver, renderer="none", experiment="chat-export")
    agent.invoke({"request": "A red fox in fresh snow"}, {"configurable": {"thread_id": "by-request"}})
    agent.invoke({"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "What shall I draw?"},
                               {"role": "user", "content": "A red fox in fresh snow"}]}, {"configurable": {"thread_id": "by-chat"}})
    from genevolve_graph.training.export import ExportFilters

    records = {r.meta["thread_id"]: r.to_json() for r in export_threads(saver, format="trl", filters=ExportFilters(dedupe=False))}
    assert set(records) == {"by-request", "by-chat"}
    chat, plain = records["by-chat"]["messages"], records["by-request"]["messages"]
    assert [m["role"] for m in chat] == [m["role"] for m in plain] and chat[0]["role"] == "system"
    assert [m["content"] for m in chat[1:]] == [m["content"] for m in plain[1:]]  # no greeting, no closing reply
