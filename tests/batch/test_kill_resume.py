"""A real process killed or stopped mid-run, then resumed: every row exactly once.

The batch runs as a subprocess (``python -m genevolve_graph.cli batch``) against a scripted
policy server in this process, so the server sees both sessions' requests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import read_results, request_text, script_for, turns_by_row, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
ROWS = 12
ROUNDS = 4


def start_batch(path: Path, out: Path, server, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "genevolve_graph.cli", "batch", "--input", str(path), "--out", str(out),
               "--policy", "openai", "--base-url", server.base_url, "--model", "scripted", "--concurrency", "4",
               "--retry-delay", "0.01", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the batch ended early ({proc.returncode}): {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the batch")
        time.sleep(0.02)


def recorded(out: Path) -> int:
    path = out / "results.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def setup_input(tmp_path: Path) -> tuple[Path, list[str]]:
    ids = [f"row{i:02d}" for i in range(ROWS)]
    return write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i), "n": k} for k, i in enumerate(ids)]), ids


def assert_exactly_once(out: Path, ids: list[str]) -> list[dict]:
    records = read_results(out / "results.jsonl")
    assert sorted(r["id"] for r in records) == ids
    assert all(r["termination"] == "answer" and r["rounds"] == ROUNDS for r in records)
    return records


def resume_in_process(cli, path: Path, out: Path, server):
    return cli("batch", "--input", path, "--out", out, "--policy", "openai", "--base-url", server.base_url,
               "--model", "scripted", "--concurrency", "4", "--retry-delay", "0.01")


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_sigkill_mid_run_then_resume_records_every_row_exactly_once(cli, tmp_path, scripted_server, durability):
    server = scripted_server(script_for([f"row{i:02d}" for i in range(ROWS)], rounds=ROUNDS), latency=0.1)
    path, ids = setup_input(tmp_path)
    out = tmp_path / "run"
    proc = start_batch(path, out, server, "--durability", durability)
    # Kill once some rows are recorded and the rows in flight are past their first turn.
    wait_for(lambda: recorded(out) >= 4 and sum(1 for t in turns_by_row(server).values() if max(t) >= 2 and len(t) < ROUNDS) >= 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = recorded(out)
    assert 4 <= done_before < ROWS
    # Simulate the worst case of a kill during a write: a torn last line.
    with open(out / "results.jsonl", "ab") as stream:
        stream.write(b'{"id": "row11", "question": "batch req')
    in_flight_before = {k for k, t in turns_by_row(server).items() if len(t) < ROUNDS and max(t) >= 1}
    seen = len(server.requests)
    result = resume_in_process(cli, path, out, server)
    stdout, stderr = result.stdout, result.stderr
    assert result.exit_code == 0, stderr
    assert "torn line" in stderr and f"rollouts: {ROWS}/{ROWS} rows recorded (answer {ROWS})" in stdout
    assert_exactly_once(out, ids)
    resumed = turns_by_row(server, since=seen)
    if durability == "exit":  # no checkpoint before a trajectory ends: rows killed mid-way start over, nothing else is lost
        restarted = [k for k in in_flight_before if k in resumed]
        assert restarted and all(resumed[k] == list(range(ROUNDS)) for k in restarted), (in_flight_before, resumed)
        return
    continued = [k for k in in_flight_before if k in resumed and min(resumed[k]) >= 1]
    assert continued, (in_flight_before, resumed)  # rows killed mid-trajectory continued from their checkpoints
    for key in continued:  # and each continued row asked for every turn it had not reached, once
        assert resumed[key] == list(range(min(resumed[key]), ROUNDS)), (key, resumed[key])


@pytest.mark.parametrize("sig, code, grace", [(signal.SIGINT, 130, "30"), (signal.SIGTERM, 143, "0")])
def test_sigint_and_sigterm_stop_cleanly_and_say_how_to_resume(cli, tmp_path, scripted_server, sig, code, grace):
    server = scripted_server(script_for([f"row{i:02d}" for i in range(ROWS)], rounds=ROUNDS), latency=0.1)
    path, ids = setup_input(tmp_path)
    out = tmp_path / "run"
    proc = start_batch(path, out, server, "--grace", grace)
    wait_for(lambda: recorded(out) >= 4, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert f"interrupted by {sig.name}" in stderr and "resume with the same command: genevolve-graph batch --input" in stderr
    records = read_results(out / "results.jsonl")
    assert len({r["id"] for r in records}) == len(records) < ROWS
    assert (out / "results.json").exists()
    if sig == signal.SIGINT:
        # In-flight rows were allowed to finish: every row the server saw is recorded.
        started = set(turns_by_row(server))
        assert {request_text(r["id"]) for r in records} == started
    result = resume_in_process(cli, path, out, server)
    assert result.exit_code == 0, result.stderr
    assert_exactly_once(out, ids)
