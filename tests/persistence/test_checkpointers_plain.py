"""Plain checkpointers work as they come: no serde= argument, no deserialization warning.

A bare ``InMemorySaver()``, ``SqliteSaver`` and ``PostgresSaver`` (where CI provides one)
record a trajectory and give back our pydantic types, through the graph and when read
directly from the saver, both in LangGraph's default mode and under
``LANGGRAPH_STRICT_MSGPACK=true`` (read at import, so that case runs in a subprocess).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener

from genevolve_graph import Program, Reference, RenderResult, create_genevolve_agent

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]
REQUEST = 'A 1990s travel-magazine cover in front of the Eiffel Tower, title "PARIS"'


@contextlib.contextmanager
def bare_saver(kind: str, tmp_path):
    if kind == "memory":
        yield InMemorySaver()
    elif kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(tmp_path / "plain.sqlite", check_same_thread=False)
        try:
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
    else:
        if not POSTGRES_URL:
            pytest.skip("no PostgreSQL: set GENEVOLVE_TEST_POSTGRES_URL (scripts/start_test_postgres.sh starts one, as .ci/run does)")
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(POSTGRES_URL) as saver:
            saver.setup()
            yield saver


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_a_bare_saver_round_trips_our_types_without_warnings(kind, tmp_path, caplog):
    events: list[dict] = []
    remove = register_serde_event_listener(events.append)
    caplog.set_level(logging.DEBUG, logger="langgraph")
    try:
        with bare_saver(kind, tmp_path) as saver:
            agent = create_genevolve_agent(checkpointer=saver, output_dir=str(tmp_path))
            config = {"configurable": {"thread_id": f"plain-{uuid.uuid4().hex[:8]}"}}
            agent.invoke({"request": REQUEST}, config)
            values = agent.get_state(config).values
            direct = saver.get_tuple(config).checkpoint["channel_values"]  # not through the compiled graph
            history = list(agent.get_state_history(config))
    finally:
        remove()
    assert isinstance(values["program"], Program) and isinstance(values["render"], RenderResult)
    assert isinstance(values["images"]["IMG_001"], Reference)
    assert isinstance(direct["program"], Program) and direct["program"] == values["program"]
    assert len(history) > 8
    serde_logs = [r.getMessage() for r in caplog.records if "serde" in r.name or "msgpack" in r.getMessage().lower()]
    assert serde_logs == [] and events == []


STRICT_SCRIPT = """
import logging, sqlite3, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from genevolve_graph import Program, create_genevolve_agent
for saver in (InMemorySaver(), SqliteSaver(sqlite3.connect(sys.argv[1], check_same_thread=False))):
    agent = create_genevolve_agent(checkpointer=saver, renderer="none")
    config = {"configurable": {"thread_id": "strict"}}
    agent.invoke({"request": "A red fox in fresh snow"}, config)
    assert isinstance(agent.get_state(config).values["program"], Program)
    assert isinstance(saver.get_tuple(config).checkpoint["channel_values"]["program"], Program)
print("strict ok")
"""


def test_strict_msgpack_keeps_our_types_and_logs_nothing(tmp_path, subprocess_env):
    env = dict(subprocess_env, LANGGRAPH_STRICT_MSGPACK="true")
    proc = subprocess.run([sys.executable, "-c", STRICT_SCRIPT, str(tmp_path / "strict.sqlite")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("DEBUG:bm25s")]  # bm25s logs on its own
    assert lines == ["strict ok"], proc.stdout  # no "Blocked deserialization" line
    assert "Blocked" not in proc.stderr and "unregistered" not in proc.stderr


@pytest.fixture
def subprocess_env(tmp_path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL")}
    env.update(HF_HUB_OFFLINE="1", LANGSMITH_TRACING="false", PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "cache"))
    return env


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_review_pauses_and_resumes_on_every_bare_saver(kind, tmp_path):
    from langgraph.types import Command

    with bare_saver(kind, tmp_path) as saver:
        agent = create_genevolve_agent(checkpointer=saver, review_before_render=True, output_dir=str(tmp_path))
        config = {"configurable": {"thread_id": f"review-{uuid.uuid4().hex[:8]}"}}
        paused = agent.invoke({"request": REQUEST}, config, version="v2")
        assert paused.interrupts[0].value["program"]["reference_images"]
        assert agent.get_state(config).next == ("review",)
        final = agent.invoke(Command(resume={"action": "approve"}), config)
    assert final["render"].success and isinstance(final["program"], Program) and final["review"] == {"action": "approve"}
