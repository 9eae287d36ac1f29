"""The Studio wiring without a server: langgraph.json, the checkpointer factory, the forms."""

from __future__ import annotations

import json
import os

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from genevolve_graph import AgentContext, Program
from genevolve_graph.agent.graph import build_graph, graph
from genevolve_graph.persistence import open_checkpointer_sync
from genevolve_graph.serving.studio import TRACE_DB_ENV, checkpointer, trace_db_path

from .conftest import ROOT


def test_langgraph_studio_json_names_the_studio_checkpointer_and_deployment_does_not():
    """The SQLite trace file belongs to ``make studio`` alone: a deployment built from
    langgraph.json keeps the server's own checkpointer (Postgres in production)."""
    studio = json.loads((ROOT / "langgraph.studio.json").read_text())
    deploy = json.loads((ROOT / "langgraph.json").read_text())
    path, _, attr = studio["checkpointer"]["path"].partition(":")
    assert (ROOT / path).resolve() == (ROOT / "genevolve_graph" / "serving" / "studio.py").resolve() and attr == "checkpointer"
    assert "checkpointer" not in deploy and deploy["graphs"] == studio["graphs"]
    same = ("$schema", "dependencies", "graphs", "http", "env")
    assert {k: studio.get(k) for k in same} == {k: deploy.get(k) for k in same}
    pytest.importorskip("langgraph_cli")
    from langgraph_cli.config import validate_config_file

    assert validate_config_file(ROOT / "langgraph.studio.json")["checkpointer"]["path"] == studio["checkpointer"]["path"]
    assert not validate_config_file(ROOT / "langgraph.json").get("checkpointer")
    assert "langgraph.studio.json" in (ROOT / "Makefile").read_text()


def test_trace_db_path_from_env_or_default(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(TRACE_DB_ENV, raising=False)
    assert trace_db_path() == tmp_path / "cache" / "genevolve-graph" / "traces.sqlite"
    monkeypatch.setenv(TRACE_DB_ENV, str(tmp_path / "a.sqlite"))
    assert trace_db_path() == tmp_path / "a.sqlite"
    monkeypatch.setenv(TRACE_DB_ENV, f"sqlite:///{tmp_path / 'b.sqlite'}")
    assert trace_db_path() == tmp_path / "b.sqlite"


async def test_studio_checkpointer_records_a_run_readable_by_the_export_side(monkeypatch, tmp_path, caplog):
    db = tmp_path / "nested" / "folder" / "traces.sqlite"
    monkeypatch.setenv(TRACE_DB_ENV, str(db))
    async with checkpointer() as saver:
        assert isinstance(saver, AsyncSqliteSaver)
        config = {"configurable": {"thread_id": "studio-1"}}
        await build_graph(saver).ainvoke({"request": "a lighthouse on a cliff"}, config, context=AgentContext(renderer="none"))
    with open_checkpointer_sync(f"sqlite:///{db}") as reader:
        values = build_graph(reader).get_state(config).values
    assert isinstance(values["program"], Program) and values["termination"] == "answer"
    # the saver carries the package's serializer: its models are allowed, nothing is revived blindly
    assert "unregistered type" not in caplog.text


def test_studio_forms_exist_for_input_output_and_context():
    """Studio draws its input form from the input schema (a TypedDict pydantic must accept on
    Python 3.11) and its configuration form from the context schema."""
    request = graph.get_input_jsonschema()["properties"]["request"]
    assert request["type"] == "string" and request["description"].startswith("The image request") and request["examples"]
    assert {"program", "termination", "render", "messages"} <= set(graph.get_output_jsonschema()["properties"])
    assert graph.get_context_jsonschema()["properties"]["renderer"]["default"] == "preview"


async def test_services_are_built_off_the_event_loop_and_cached_per_loop(monkeypatch):
    """Async nodes get their policy, backends and renderer from ``Services.aget_*``: a miss is
    built in a worker thread (building may read files), a hit is the same object."""
    import threading

    from genevolve_graph.nodes import services as services_module

    built_in: list[int] = []
    original = services_module.make_renderer

    def recording_make_renderer(context):
        built_in.append(threading.get_ident())
        return original(context)

    monkeypatch.setattr(services_module, "make_renderer", recording_make_renderer)
    services = services_module.Services()
    ctx = AgentContext(renderer="preview", experiment="services-test")
    first = await services.aget_renderer(ctx)
    second = await services.aget_renderer(ctx)
    assert first is second and len(built_in) == 1 and built_in[0] != threading.get_ident()
    assert "text_rendering" in (await services.aget_skills(ctx)).names()


def test_the_deployment_config_builds_a_dockerfile(tmp_path):
    """``langgraph dockerfile`` (what ``langgraph build`` runs first, no Docker needed) accepts
    langgraph.json: the package is installed from the checkout and no SQLite checkpointer is set."""
    import subprocess
    import sys

    pytest.importorskip("langgraph_cli")
    out = tmp_path / "Dockerfile"
    proc = subprocess.run([sys.executable, "-m", "langgraph_cli", "dockerfile", "-c", "langgraph.json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dockerfile = out.read_text()
    assert "genevolve_graph/serving/server.py:make_graph" in dockerfile and "studio.py" not in dockerfile
    assert "LANGSERVE_GRAPHS" in dockerfile
