"""Studio / dev-server callers, part 2: what a caller's run may write, and no command's
output is ever a trace database.

A caller's run writes only in the operator's renders folder (``GENEVOLVE_RENDERS_DIR``,
default the cache's ``renders``, never the working directory), in a folder the server names
after the run's thread; ``output_name`` is a plain name with an image suffix; the image is
published without replacing anything but an earlier image of the same thread. Separately, in
every command, the user's trace databases and an input database's ``-wal``/``-shm`` files are
never outputs.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genevolve_graph import AgentContext
from genevolve_graph.core.state import Program

PROGRAM = {"gen_prompt": "A red fox in the snow.", "reference_images": []}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_caller_names_no_file_to_write_on_the_server(served_project):
    langgraph_sdk = pytest.importorskip("langgraph_sdk")
    client = langgraph_sdk.get_sync_client(url=served_project.url)  # a same-host tool: passes the request guard
    project, cache = served_project.project, served_project.cache / "genevolve-graph"
    attempts = [  # the reported requests, and their siblings
        ({"output_dir": ".", "options": {"output_name": "README.md"}}, "output_"),
        ({"options": {"output_name": "README.md"}}, "output_name"),
        ({"output_dir": str(project), "options": {"output_name": "x.png"}}, "output_dir"),
        ({"output_dir": "genevolve_graph", "options": {"output_name": "server.py"}}, "output_"),
        ({"output_dir": str(cache), "options": {"output_name": "traces.sqlite"}}, "output_"),
        ({"options": {"output_name": "traces.sqlite-wal"}}, "output_name"),
        ({"output_dir": str(served_project.renders / ".."), "options": {"output_name": "a.png"}}, "output_dir"),
        ({"options": {"output_name": ".hidden.png"}}, "output_name"),
    ]
    before = served_project.snapshot()
    for graph in ("genevolve_render", "genevolve"):
        for context, field in attempts:
            graph_input = {"program": PROGRAM} if graph == "genevolve_render" else {"request": "A red fox in the snow."}
            thread = client.threads.create()
            parts = list(client.runs.stream(thread["thread_id"], graph, input=graph_input, stream_mode=["values"],
                                            context={"renderer": "preview", **context}))
            errors = [p.data for p in parts if p.event == "error"]
            render = next((p.data.get("render") for p in reversed(parts) if p.event == "values" and p.data.get("render")), None)
            refusal = str(errors) if errors else (render or {}).get("error") or ""
            assert field in refusal and "is refused" in refusal, (graph, context, parts[-3:])
            assert not (render or {}).get("success"), (graph, context)
    assert served_project.snapshot() == before  # the project, the cache and the trace database's neighbours untouched

    # what a caller may do: the default, a name of its own, a folder inside the renders folder
    made = []
    for context in ({}, {"options": {"output_name": "fox.png"}}, {"output_dir": str(served_project.renders / "mine"),
                                                                   "options": {"output_name": "fox.png"}}):
        thread = client.threads.create()
        done = client.runs.wait(thread["thread_id"], "genevolve_render", input={"program": PROGRAM},
                                context={"renderer": "preview", **context})
        path = Path(done["render"]["output_path"])
        assert done["render"]["success"] and path.is_file(), done
        assert path.parent.name == thread["thread_id"] and path.is_relative_to(served_project.renders)
        made.append((thread["thread_id"], path, context))
    assert len({p for _, p, _ in made}) == 3  # two callers asking for one name get two files
    # a second run of the same thread renders again into its own folder (the only replacement allowed)
    thread_id, path, context = made[1]
    again = client.runs.wait(thread_id, "genevolve_render", input={"program": PROGRAM}, context={"renderer": "preview", **context})
    assert again["render"]["success"] and again["render"]["output_path"] == str(path)


def test_a_run_publishes_its_image_without_replacing_what_stands_there(tmp_path, monkeypatch):
    """The renderer writes a staging file; a link or folder planted at the image's name in the
    run's folder is never replaced, and whatever it points at is untouched."""
    from genevolve_graph.agent.graph import build_graph
    from genevolve_graph.util.file_modes import publish_file

    renders = tmp_path / "renders"
    monkeypatch.setenv("GENEVOLVE_RENDERS_DIR", str(renders))
    monkeypatch.setenv("GENEVOLVE_ALLOWED_ROOTS", str(tmp_path))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (renders / "t-1").mkdir(parents=True)
    (renders / "t-1" / "fox.png").symlink_to(victim)
    graph = build_graph(confine=True)
    done = graph.invoke({"request": "A red fox in the snow."}, {"configurable": {"thread_id": "t-1"}},
                        context={"renderer": "preview", "options": {"output_name": "fox.png"}})
    assert done["render"].success is False and "nothing was replaced" in done["render"].error
    assert victim.read_text() == "keep me" and (renders / "t-1" / "fox.png").is_symlink()
    assert sorted(p.name for p in (renders / "t-1").iterdir()) == ["fox.png"]  # no staging file left behind

    staging = tmp_path / "staging.png"
    staging.write_bytes(b"new")
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        publish_file(staging, existing)
    assert existing.read_bytes() == b"old" and staging.exists()
    publish_file(staging, existing, replace_regular=True)
    assert existing.read_bytes() == b"new" and not staging.exists()


def test_a_served_graph_writes_under_the_cache_never_the_working_directory(tmp_path, monkeypatch):
    from genevolve_graph.agent.graph import build_graph

    monkeypatch.delenv("GENEVOLVE_RENDERS_DIR", raising=False)
    monkeypatch.delenv("GENEVOLVE_ALLOWED_ROOTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    done = build_graph(confine=True).invoke({"request": "A red fox in the snow."}, {"configurable": {"thread_id": "t-2"}},
                                            context={"renderer": "preview"})
    assert Path(done["render"].output_path) == (tmp_path / "cache" / "genevolve-graph" / "renders" / "t-2" / "t-2.png").resolve()
    assert isinstance(done["program"], Program)
    assert not list(tmp_path.glob("*.png"))
    with pytest.raises(Exception, match="output_dir"):
        build_graph(confine=True).invoke({"request": "x"}, {"configurable": {"thread_id": "t-3"}},
                                         context={"renderer": "preview", "output_dir": str(tmp_path)})
    assert AgentContext().output_dir == ""  # the operator's own runs keep their default


def _database(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("command", ["export", "import-sft"])
def test_no_command_writes_a_trace_database_or_its_wal_and_shm(tmp_path, monkeypatch, command):
    from genevolve_graph.cli.app import _register_commands, app

    _register_commands()  # as main() does before it dispatches
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    named = _database(tmp_path / "studio" / "studio-traces.sqlite")
    monkeypatch.setenv("GENEVOLVE_TRACE_DB", str(named))
    default = _database(tmp_path / "cache" / "genevolve-graph" / "traces.sqlite")
    source = _database(tmp_path / "run" / "trace.sqlite")
    data = tmp_path / "sft.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<answer>{}</answer>"}], "images": []}\n')
    targets = [default, Path(f"{default}-wal"), Path(f"{named}-shm"), named]
    if command == "export":
        targets.append(Path(f"{source}-wal"))  # the side file of the command's own input
    runner = CliRunner()
    for target in targets:
        before = target.read_bytes() if target.exists() else None
        if command == "export":
            args = ["export", "--checkpoint", f"sqlite:///{source}", "--format", "sft", "--out", str(target)]
        else:
            args = ["import-sft", "--data", str(data), "--out", str(target)]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (target, result.output)
        assert "the same file" in result.output and str(target) in result.output, result.output
        assert (target.read_bytes() if target.exists() else None) == before
    assert os.path.getsize(default) > 0
