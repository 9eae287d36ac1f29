"""``data build --server``: the teacher's trajectories and the ground-truth renders run as
background runs on a LangGraph Server (``langgraph dev`` started by the test, recording into
its SQLite trace as ``langgraph.studio.json`` configures it), through the executor of
``batch --server``. The trajectories stage is stopped part way (Ctrl-C twice: the rows in
flight go on running on the server) and resumed: every item recorded once, no teacher turn
asked twice, and the same funnel as the local build. The split reads the server's threads
from the database its checkpointer writes (``--checkpoint``), and without it stops with one
line naming the fix."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from genevolve_graph.data.recipes import bundled_recipe
from genevolve_graph.testing.langgraph_dev import dev_env
from genevolve_graph.testing.scripted_data import TEACHER
from genevolve_graph.testing.scripted_openai import ScriptedChatServer

from ..studio.dev_server import langgraph_dev, server_folder
from .conftest import ROOT, cli, models_asked, read_jsonl
from .test_kill_resume import lines
from .test_pipeline import EXPECTED_HEADLINE

pytest.importorskip("langgraph_api", reason="the server test needs the studio extra: pip install 'genevolve-graph[studio]'")
langgraph_sdk = pytest.importorskip("langgraph_sdk")

TEACHER_ROWS = 19  # the bundled recipe's requests, each one teacher trajectory (EXPECTED_HEADLINE)


def server_env(tmp_path: Path, base_url: str) -> dict[str, str]:
    return dev_env(tmp_path, base_url)


def teacher_turns(server) -> dict[str, list[int]]:
    """Which turns each teacher conversation asked for, in order."""
    turns: dict[str, list[int]] = defaultdict(list)
    for body in models_asked(server, TEACHER):
        turns[ScriptedChatServer.conversation_key(body)].append(ScriptedChatServer.turn(body))
    return turns


def stop_part_way(args: list[str], journal: Path, env: dict[str, str]) -> None:
    """``data build ARGS`` in a subprocess, stopped with Ctrl-C twice once two trajectories are
    recorded (the second cancels the rows in flight here; their runs go on on the server)."""
    proc = subprocess.Popen([sys.executable, "-m", "genevolve_graph.cli", "data", "build", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while len(lines(journal)) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the trajectories stage did not record two trajectories in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert len(lines(journal)) < TEACHER_ROWS


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_data_build_on_a_langgraph_server_stops_resumes_and_splits(data_env, tmp_path):
    scripted = data_env()
    recipe, out = bundled_recipe(), tmp_path / "build"
    requests = cli("data", "build", "--recipes", recipe, "--out", out, "--stages", "requests", "--no-progress")
    assert requests.exit_code == 0, requests.stdout + requests.stderr

    env = server_env(tmp_path, scripted.base_url)
    trace = tmp_path / "server-trace.sqlite"
    with langgraph_dev(server_folder(tmp_path / "server", "langgraph.studio.json"), tmp_path / "dev.log", env, jobs=4) as server:
        scripted.latency = 0.3
        stop_part_way(["--recipes", str(recipe), "--out", str(out), "--stages", "trajectories", "--server", server.url, "--no-progress"],
                      out / "trajectories" / "results.jsonl", env)
        scripted.latency = 0.0

        # the server writes its renders under its cache (XDG_CACHE_HOME), a folder this machine shares
        args = ["--recipes", recipe, "--out", out, "--server", server.url, "--server-root", tmp_path / "cache", "--no-progress"]
        resumed = cli("data", "build", *args, "--stages", "trajectories,filter,render,visual-filter")
        assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
        trajectories = read_jsonl(out / "trajectories" / "results.jsonl")
        assert len(trajectories) == TEACHER_ROWS and len({r["id"] for r in trajectories}) == TEACHER_ROWS  # each once
        assert all(r["server_thread"] for r in trajectories)
        turns = teacher_turns(scripted)
        assert len(turns) == TEACHER_ROWS
        assert all(asked == list(range(len(asked))) for asked in turns.values()), turns  # no turn asked twice

        client = langgraph_sdk.get_sync_client(url=server.url)
        run_id = json.loads((out / "trajectories" / "run.json").read_text())["run_id"]
        threads = client.threads.search(metadata={"batch_run": run_id, "stage": "rollouts"}, limit=100)
        assert {t["thread_id"] for t in threads} == {r["thread_id"] for r in trajectories}  # one server thread per item
        renders = read_jsonl(out / "render" / "results.jsonl")
        assert renders and all(r["render_server"] == server.url and r["success"] for r in renders)
        assert all(Path(r["output_path"]).is_relative_to(tmp_path / "cache") for r in renders)  # written by the server
        assert not (out / "render" / "images").exists()

        no_database = cli("data", "build", *args, "--stages", "split")  # the server's threads are not in a local file
        assert no_database.exit_code == 2
        assert "--checkpoint" in no_database.stderr and server.url in no_database.stderr
        assert len([line for line in no_database.stderr.splitlines() if line.strip()]) == 1

        split = cli("data", "build", *args, "--stages", "split", "--checkpoint", f"sqlite:///{trace}")
        assert split.exit_code == 0, split.stdout + split.stderr
    sft = read_jsonl(out / "sft" / "train.jsonl")
    assert {r["meta"]["thread_id"] for r in sft} <= {r["thread_id"] for r in trajectories}
    assert not (out / "sft" / "problems.txt").exists()
    assert cli("data", "report", out).exit_code == 0
    assert json.loads((out / "report" / "funnel.json").read_text())["headline"] == EXPECTED_HEADLINE


def test_a_server_record_naming_a_file_outside_the_shared_folders_fails_alone(tmp_path):
    """A server's reply is data: a render whose output_path has the right shape but lies
    outside the folders shared with this machine becomes that row's render failure (never read
    by the visual filter or copied by the split); one inside them is kept as it is."""
    from genevolve_graph.batch.renders import RenderStage
    from genevolve_graph.batch.rows import BatchRow
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.data.server_files import _Confined, shared_roots
    from genevolve_graph.util.paths import file_stem

    shared = tmp_path / "shared"
    stage = RenderStage(AgentContext(renderer="preview"), None, tmp_path / "render", "skip", run_id="r1", server_url="http://127.0.0.1:1")
    row = BatchRow(key="a1", position=0, data={"id": "a1", "question": "q", "gen_prompt": "A poster.", "reference_images": []})
    thread = "3f1c2d9e-0000-4000-8000-000000000001"
    confined = _Confined(stage, shared_roots(server_roots=[str(shared)]))

    def render(folder: Path) -> dict:
        values = {"render": {"success": True, "backend": "preview", "output_path": str(folder / file_stem(thread) / "a1.png")}}
        return confined.remote_record(row, thread, values, 0.1)

    outside = render(tmp_path / "elsewhere")
    assert outside["success"] is False and outside["output_path"] is None and outside["render_thread"] == thread
    assert "outside the folders shared" in outside["render_error"] and "--server-root" in outside["render_error"]
    inside = render(shared)
    assert inside["success"] is True and inside["output_path"] == str(shared / file_stem(thread) / "a1.png")


@pytest.fixture
def recipe_env(monkeypatch, tmp_path):
    """The bundled recipe's variables, naming nothing that answers (these runs stop before any stage)."""
    monkeypatch.setenv("GENEVOLVE_DATA_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GENEVOLVE_DATA_EMBEDDER", str(tmp_path / "no-embedder"))


def test_server_only_options_without_server_are_one_line_errors(tmp_path, recipe_env):
    for option, value in (("--server-root", tmp_path), ("--server-output-dir", "/srv/renders")):
        result = cli("data", "build", "--recipes", "bundled:small", "--out", tmp_path / "build", option, value)
        assert result.exit_code == 2
        assert f"{option} names a folder" in result.stderr and "pass --server too" in result.stderr
    assert not (tmp_path / "build" / "requests").exists()  # nothing ran


def test_an_unreachable_server_is_one_line_naming_it(tmp_path, recipe_env):
    from genevolve_graph.testing.langgraph_dev import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = cli("data", "build", "--recipes", "bundled:small", "--out", tmp_path / "build", "--stages", "requests,trajectories",
                 "--server", url)
    assert result.exit_code == 2
    assert f"cannot reach the LangGraph Server {url} (--server)" in result.stderr
    assert not (tmp_path / "build" / "requests").exists()  # refused before any stage
