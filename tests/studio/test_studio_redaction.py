"""The Studio checkpointer keeps credentials in URLs out of checkpoint metadata (issue 12, item 3).

``langgraph dev`` copies a run's context into checkpoint metadata; a configured endpoint
with ``user:password@`` would otherwise be written to the trace database as it is.
"""

from __future__ import annotations

import sqlite3

from genevolve_graph import AgentContext
from genevolve_graph.agent.graph import build_graph
from genevolve_graph.serving.studio import TRACE_DB_ENV, checkpointer

PASSWORD = "pa55-w0rd-secret"


async def test_checkpoint_metadata_urls_lose_their_password(monkeypatch, tmp_path):
    db = tmp_path / "traces.sqlite"
    monkeypatch.setenv(TRACE_DB_ENV, str(db))
    config = {"configurable": {"thread_id": "t1", "endpoint": f"https://u:{PASSWORD}@x.example/v1"},
              "metadata": {"base_url": f"http://op:{PASSWORD}@vllm.internal:8000/v1", "note": f"see https://h/x?token={PASSWORD}"}}
    async with checkpointer() as saver:
        await build_graph(saver).ainvoke({"request": "a lighthouse"}, config, context=AgentContext(renderer="none"))
        stored = (await saver.aget_tuple({"configurable": {"thread_id": "t1"}})).metadata
    assert stored["endpoint"] == "https://u:***@x.example/v1"
    assert stored["base_url"] == "http://op:***@vllm.internal:8000/v1" and stored["note"] == "see https://h/x?token=***"
    with sqlite3.connect(db) as conn:
        raw = b"".join(bytes(m or b"") for (m,) in conn.execute("select metadata from checkpoints"))
    assert raw and PASSWORD.encode() not in raw
