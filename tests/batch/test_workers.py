"""Stage 1 over worker processes: same records, same bound, and no orphan after the parent dies."""

from __future__ import annotations

import signal
import time

import psutil

from genevolve_graph.batch.workers import split_concurrency

from .conftest import policy_args, read_results, request_text, script_for, write_jsonl
from .test_kill_resume import ROUNDS, recorded, resume_in_process, setup_input, start_batch, wait_for


def test_split_concurrency_never_exceeds_the_total():
    assert split_concurrency(7, 3) == [3, 2, 2] and split_concurrency(4, 4) == [1, 1, 1, 1]


def test_worker_processes_record_every_row_once_within_the_bound(cli, tmp_path, scripted_server):
    ids = [f"w{i}" for i in range(10)]
    server = scripted_server(script_for(ids, rounds=3), latency=0.05)
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i), "tag": "kept"} for i in ids])
    result = cli("batch", "--input", path, "--out", tmp_path / "run", "--workers", "2", "--concurrency", "4", *policy_args(server))
    assert result.exit_code == 0, result.stderr
    records = read_results(tmp_path / "run" / "results.jsonl")
    assert sorted(r["id"] for r in records) == ids
    assert all(r["termination"] == "answer" and r["tag"] == "kept" and r["rounds"] == 3 for r in records)
    assert server.max_in_flight <= 4 and len(server.successful_bodies()) == 30
    assert cli("batch", "--input", path, "--out", tmp_path / "run", "--workers", "2", "--checkpoint", "memory",
               *policy_args(server)).exit_code == 2  # processes cannot share an in-memory checkpointer


def test_records_larger_than_a_pipe_buffer_arrive_whole_on_the_command_lines_loop(cli, tmp_path, scripted_server):
    """Each record (a 300 kB field of its row) spans several pipe buffers, so the parent is
    woken with half a record waiting. On uvloop (the command line's loop), whose watched
    descriptors are non-blocking, reading it used to fail as if the worker had died
    ("worker process 1 exited unexpectedly")."""
    from genevolve_graph.util.event_loop import loop_kind

    assert loop_kind() == "uvloop"
    ids = [f"big{i}" for i in range(8)]
    server = scripted_server(script_for(ids, rounds=2), latency=0.01)
    bulk = "x" * 300_000
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i), "bulk": bulk} for i in ids])
    result = cli("batch", "--input", path, "--out", tmp_path / "run", "--workers", "2", "--concurrency", "4", *policy_args(server))
    assert result.exit_code == 0, result.stderr
    records = read_results(tmp_path / "run" / "results.jsonl")
    assert sorted(r["id"] for r in records) == sorted(ids)
    assert all(r["termination"] == "answer" and r["bulk"] == bulk for r in records)


def test_killing_the_parent_stops_its_workers_and_resume_records_every_row_once(cli, tmp_path, scripted_server):
    server = scripted_server(script_for([f"row{i:02d}" for i in range(12)], rounds=ROUNDS), latency=0.3)
    path, ids = setup_input(tmp_path)
    out = tmp_path / "run"
    proc = start_batch(path, out, server, "--workers", "2")
    wait_for(lambda: recorded(out) >= 2, proc, timeout=90)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # The workers notice their parent is gone, cancel their rows and exit. A loaded machine may
    # take a while to get there, so wait for the processes themselves rather than a fixed time.
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, alive
    settled = len(server.requests)
    time.sleep(0.5)
    assert len(server.requests) == settled  # nothing keeps running unrecorded
    result = resume_in_process(cli, path, out, server)
    assert result.exit_code == 0, result.stderr
    records = read_results(out / "results.jsonl")
    assert sorted(r["id"] for r in records) == ids and all(r["termination"] == "answer" for r in records)
