"""``batch --server``: every row a background run on a LangGraph Server (``langgraph dev``
started by the test, in memory), stopped part way and resumed: each row recorded once, and
no policy turn asked twice (rows in flight at the stop go on running on the server and are
joined by the next session)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from genevolve_graph.testing.langgraph_dev import dev_env

from ..studio.dev_server import langgraph_dev
from ..studio.dev_server import server_folder as make_server_folder
from .conftest import read_results, request_text, script_for, turns_by_row, write_jsonl
from .test_kill_resume import recorded, wait_for

pytest.importorskip("langgraph_api", reason="the server test needs the studio extra: pip install 'genevolve-graph[studio]'")
langgraph_sdk = pytest.importorskip("langgraph_sdk")

ROOT = Path(__file__).resolve().parents[2]
ROWS, ROUNDS = 6, 3


def interrupt_part_way(command: str, args: list[str], out: Path, env: dict[str, str], rows: int) -> None:
    """``genevolve-graph COMMAND ARGS`` in a subprocess, stopped with Ctrl-C once two rows are
    recorded: it exits 130, has recorded fewer than ``rows`` and says how to resume."""
    proc = subprocess.Popen([sys.executable, "-m", "genevolve_graph.cli", command, *args, "--grace", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    wait_for(lambda: recorded(out) >= 2, proc, timeout=120)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert recorded(out) < rows and "resume with the same command" in stderr


def server_folder(tmp_path: Path) -> Path:
    """A langgraph.json naming this checkout's graph, in the test's folder, so that the dev
    server's state (``.langgraph_api``) stays there and no other test's threads come back."""
    return make_server_folder(tmp_path / "server")


def server_env(tmp_path: Path, policy_url: str) -> dict[str, str]:
    return dev_env(tmp_path, policy_url)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_batch_on_a_langgraph_server_stops_and_resumes_without_running_anything_twice(cli, tmp_path, scripted_server):
    ids = [f"s{i}" for i in range(ROWS)]
    policy = scripted_server(script_for(ids, rounds=ROUNDS), latency=0.3)
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i)} for i in ids])
    out = tmp_path / "run"
    env = server_env(tmp_path, policy.base_url)
    with langgraph_dev(server_folder(tmp_path), tmp_path / "dev.log", env) as server:
        args = ["--input", str(path), "--out", str(out), "--server", server.url, "--policy", "openai", "--base-url",
                policy.base_url, "--model", "scripted", "--concurrency", "2", "--no-progress"]
        interrupt_part_way("batch", args, out, env, ROWS)

        resumed = cli("batch", *args)
        assert resumed.exit_code == 0, resumed.stderr
        assert f"rollouts: {ROWS}/{ROWS} rows recorded (answer {ROWS})" in resumed.stdout
        records = read_results(out / "results.jsonl")
        assert sorted(r["id"] for r in records) == ids  # each row once
        turns = turns_by_row(policy)
        assert all(turns[request_text(i)] == list(range(ROUNDS)) for i in ids), turns  # no turn asked twice

        run_id = json.loads((out / "run.json").read_text())["run_id"]
        client = langgraph_sdk.get_sync_client(url=server.url)
        threads = client.threads.search(metadata={"batch_run": run_id}, limit=100)
        assert sorted(t["metadata"]["row_id"] for t in threads) == ids  # one thread per row, by metadata
        by_thread = {r["thread_id"]: r for r in records}
        assert set(by_thread) == {t["thread_id"] for t in threads}
        record = records[0]
        assert record["gen_prompt"] and record["messages"][1]["content"] == record["question"]
        assert record["messages"][-1]["role"] == "assistant" and "<answer>" in record["messages"][-1]["content"]

        again = cli("batch", *args)  # nothing left: no new run, no new policy request
        assert again.exit_code == 0 and len(turns_by_row(policy)) == ROWS
        assert sum(len(t) for t in turns_by_row(policy).values()) == ROWS * ROUNDS
