"""Stage 1 end to end against the scripted policy server: records, concurrency, failures, resume."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from genevolve_graph.batch.engine import StopController
from genevolve_graph.batch.rollouts import RolloutOptions, arun_rollouts
from genevolve_graph.batch.rows import read_rows
from genevolve_graph.core.context import AgentContext
from genevolve_graph.agent.graph import build_graph
from genevolve_graph.persistence import serializer
from genevolve_graph.agent.runner import run_with_saver

from .conftest import bench_rows, policy_args, read_results, request_text, script_for, turns_by_row, write_jsonl

STAGE1_FIELDS = {"prompt", "gen_prompt", "reference_images", "messages", "termination", "rounds", "error", "thread_id"}


def test_batch_records_every_row_with_stage1_fields(cli, tmp_path, scripted_server):
    ids = ["k1", "k2", 3, "k4", "k5"]
    server = scripted_server(script_for(ids, rounds=4), latency=0.02)
    path = write_jsonl(tmp_path / "in.jsonl", bench_rows(ids))
    out = tmp_path / "run"
    result = cli("batch", "--input", path, "--out", out, "--concurrency", "3", *policy_args(server))
    assert result.exit_code == 0, result.output + result.stderr
    assert "rollouts: 5/5 rows recorded (answer 5); 0 remaining" in result.stdout
    lines = read_results(out / "results.jsonl")
    assert sorted(str(r["id"]) for r in lines) == sorted(map(str, ids))
    array = json.loads((out / "results.json").read_text())
    assert [r["id"] for r in array] == ids  # input order, whatever the finishing order
    manifest = json.loads((out / "run.json").read_text())
    for record in array:
        assert STAGE1_FIELDS <= set(record)
        assert record["eval_type"] == "Knowledge-Anchored" and record["gt_image"].startswith("images/")  # extra fields kept
        assert record["termination"] == "answer" and record["rounds"] == 4 and record["error"] is None
        assert record["thread_id"] == f"{manifest['run_id']}:{record['id']}"
        ref = record["reference_images"][0]
        assert set(ref) == {"img_id", "note", "local_path", "url", "title", "page_url"} and ref["img_id"] == "IMG_001"
        roles = [m["role"] for m in record["messages"]]
        assert roles[:2] == ["system", "user"] and roles[-1] == "assistant" and record["messages"][1]["content"] == record["question"]
        assert "<answer>" in record["messages"][-1]["content"]
    with sqlite3.connect(out / "trace.sqlite") as conn:
        threads = {t for (t,) in conn.execute("select distinct thread_id from checkpoints")}
    assert threads == {r["thread_id"] for r in array}


def test_concurrency_bound_is_respected(cli, tmp_path, scripted_server):
    ids = list(range(12))
    server = scripted_server(script_for(ids, rounds=2), latency=0.08)
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": request_text(i)} for i in ids])
    result = cli("batch", "--input", path, "--out", tmp_path / "run", "--concurrency", "3", *policy_args(server))
    assert result.exit_code == 0, result.stderr
    assert 2 <= server.max_in_flight <= 3
    assert len(server.successful_bodies()) == 24


def test_rows_the_policy_server_fails_end_with_error_and_the_rest_succeed(cli, tmp_path, scripted_server):
    ids = ["ok1", "poison-a", "ok2", "poison-b", "ok3"]
    server = scripted_server(script_for(ids, rounds=3), latency=0.01, fail_when="poison")
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i)} for i in ids])
    result = cli("batch", "--input", path, "--out", tmp_path / "run", "--max-retries", "1", *policy_args(server))
    assert result.exit_code == 0, result.stderr
    records = {r["id"]: r for r in read_results(tmp_path / "run" / "results.jsonl")}
    assert len(records) == 5
    for key, record in records.items():
        if key.startswith("poison"):
            assert record["termination"] == "error" and "HTTP 500" in record["error"] and record["gen_prompt"] is None
        else:
            assert record["termination"] == "answer" and record["gen_prompt"]
    failed_requests = [r for r in server.requests if r.status == 500]
    assert len(failed_requests) == 4  # two attempts each (one retry)
    assert "rollouts: 5/5 rows recorded (answer 3, error 2)" in result.stdout
    assert "2 x HTTP 500 from the policy endpoint" in result.stdout


def test_resume_skips_recorded_rows_and_retry_failed_reruns_errors(cli, tmp_path, scripted_server):
    ids = [f"r{i}" for i in range(6)]
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i)} for i in ids])
    out = tmp_path / "run"
    flaky = scripted_server(script_for(ids, rounds=2), fail_when="request r1:")
    first = cli("batch", "--input", path, "--out", out, "--max-samples", "3", "--max-retries", "0", *policy_args(flaky))
    assert first.exit_code == 0, first.stderr
    healthy = scripted_server(script_for(ids, rounds=2))
    second = cli("batch", "--input", path, "--out", out, *policy_args(healthy))
    assert second.exit_code == 0, second.stderr
    assert set(turns_by_row(healthy)) == {request_text(i) for i in ids[3:]}  # only the new rows ran
    assert cli("batch", "--input", path, "--out", out, *policy_args(healthy)).exit_code == 0
    assert len(healthy.requests) == 6  # a third run has nothing to do
    records = {r["id"]: r for r in read_results(out / "results.jsonl")}
    assert records["r1"]["termination"] == "error"
    third = cli("batch", "--input", path, "--out", out, "--retry-failed", *policy_args(healthy))
    assert third.exit_code == 0, third.stderr
    assert "retrying 1 row(s)" in third.stderr
    lines = read_results(out / "results.jsonl")
    assert sorted(r["id"] for r in lines) == ids  # each id once
    retried = next(r for r in lines if r["id"] == "r1")
    assert retried["termination"] == "answer" and retried["thread_id"].endswith(":r1#2")


def test_no_resume_refuses_a_folder_with_results(cli, tmp_path, scripted_server):
    server = scripted_server(script_for([0], rounds=2))
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": 0, "question": request_text(0)}])
    assert cli("batch", "--input", path, "--out", tmp_path / "run", *policy_args(server)).exit_code == 0
    again = cli("batch", "--input", path, "--out", tmp_path / "run", "--no-resume", *policy_args(server))
    assert again.exit_code == 2 and "already holds results" in again.stderr and "--no-resume" in again.stderr


async def test_interrupted_rows_continue_from_their_checkpoint(tmp_path, scripted_server):
    """Stop a run mid-trajectory (rows cancelled at once, as after a second Ctrl-C), then resume:
    the interrupted rows pick up at the turn they reached instead of starting over."""
    ids = list(range(4))
    server = scripted_server(script_for(ids, rounds=5), latency=0.15)
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i)} for i in ids])
    rows = read_rows(path)
    ctx = AgentContext(policy="openai", base_url=server.base_url, model="scripted", retry_initial_delay=0.01)
    options = RolloutOptions(out_dir=tmp_path / "run", concurrency=4, progress=False, grace=0.0)
    controller = StopController(grace=0.0, notify=lambda message: None)
    task = asyncio.create_task(arun_rollouts(rows, ctx, options, controller=controller))
    while not all(2 in turns for turns in turns_by_row(server).values()) or len(turns_by_row(server)) < 4:
        await asyncio.sleep(0.02)
    controller.request_stop()
    report = await task
    assert report.interrupted is not None and report.remaining == 4 and report.exit_code == 130
    assert not (tmp_path / "run" / "results.jsonl").exists() or read_results(tmp_path / "run" / "results.jsonl") == []
    seen = len(server.requests)
    resumed = await arun_rollouts(rows, ctx, RolloutOptions(out_dir=tmp_path / "run", concurrency=4, progress=False))
    assert resumed.complete and resumed.interrupted is None
    for key, turns in turns_by_row(server, since=seen).items():
        assert min(turns) >= 2, (key, turns)  # continued, not restarted
        assert turns == list(range(min(turns), 5))
    records = read_results(tmp_path / "run" / "results.jsonl")
    assert sorted(r["id"] for r in records) == ids
    assert all(r["termination"] == "answer" and r["rounds"] == 5 and len([m for m in r["messages"] if m["role"] == "assistant"]) == 5 for r in records)


class CrashingSaver(InMemorySaver):
    """Stops storing checkpoints after ``keep`` more, while task writes still land: what a
    process killed between a step's writes and the step's checkpoint leaves behind."""

    keep: int | None = None

    async def aput(self, config, checkpoint, metadata, new_versions):
        if self.keep is not None:
            if self.keep <= 0:
                raise RuntimeError("simulated crash before the checkpoint was written")
            self.keep -= 1
        return await super().aput(config, checkpoint, metadata, new_versions)


async def test_thread_with_task_writes_but_no_checkpoint_is_continued_not_taken_as_finished(scripted_server):
    server = scripted_server(script_for([1], rounds=4))
    ctx = AgentContext(policy="openai", base_url=server.base_url, model="scripted", renderer="none")
    saver = CrashingSaver(serde=serializer())
    graph = build_graph(saver)
    saver.keep = 3
    with pytest.raises(RuntimeError, match="simulated crash"):
        await run_with_saver(request_text(1), ctx, saver, thread_id="t", graph=graph)
    saver.keep = None
    snapshot = await graph.aget_state({"configurable": {"thread_id": "t"}})
    assert snapshot.next == () and snapshot.tasks and snapshot.values.get("termination") is None  # the trap
    result = await run_with_saver(request_text(1), ctx, saver, thread_id="t", graph=graph)
    assert result.termination == "answer" and result.rounds == 4


def test_a_folder_in_use_by_another_session_is_refused(cli, tmp_path, scripted_server):
    from genevolve_graph.batch.engine import lock_folder

    server = scripted_server(script_for([0], rounds=2))
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": 0, "question": request_text(0)}])
    (tmp_path / "run").mkdir()
    held = lock_folder(tmp_path / "run")  # as a running batch holds it
    try:
        busy = cli("batch", "--input", path, "--out", tmp_path / "run", *policy_args(server))
        assert busy.exit_code == 2 and "is in use by another genevolve-graph process" in busy.stderr
        assert not server.requests
    finally:
        import os

        os.close(held)
    assert cli("batch", "--input", path, "--out", tmp_path / "run", *policy_args(server)).exit_code == 0


def test_batch_on_every_checkpointer(cli, tmp_path, scripted_server, checkpoint_url):
    """memory, SQLite, and PostgreSQL when GENEVOLVE_TEST_POSTGRES_URL is set."""
    from urllib.parse import urlsplit

    from genevolve_graph.batch.rollouts import redact_url

    ids = ["c1", "c2", "c3"]
    server = scripted_server(script_for(ids, rounds=3))
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i)} for i in ids])
    out = tmp_path / "run"
    result = cli("batch", "--input", path, "--out", out, "--checkpoint", checkpoint_url, *policy_args(server))
    assert result.exit_code == 0, result.stderr
    records = read_results(out / "results.jsonl")
    assert sorted(r["id"] for r in records) == ids and all(r["termination"] == "answer" for r in records)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["checkpoint"] == redact_url(checkpoint_url)
    password = urlsplit(checkpoint_url).password if checkpoint_url.startswith("postgres") else None
    assert not password or password not in (out / "run.json").read_text()
    again = cli("batch", "--input", path, "--out", out, "--checkpoint", checkpoint_url, *policy_args(server))
    assert again.exit_code == 0 and len(server.requests) == 9
