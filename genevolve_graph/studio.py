"""The checkpointer of LangGraph Studio / ``langgraph dev`` runs.

``langgraph.json`` names :func:`checkpointer` as its ``checkpointer.path``, so a thread run
from Studio (or through ``langgraph-sdk`` against the dev server) is recorded in the same
SQLite trace database as ``genevolve-graph run`` and the batch stage, with the same
serializer, and exports like any other run.

The database is ``$GENEVOLVE_TRACE_DB`` when set, else the user's default trace database
(``genevolve_graph.paths.default_trace_db()``). Stateless runs (``runs.wait(None, ...)``)
keep no thread and are therefore not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import AsyncIterator

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from genevolve_graph.paths import default_trace_db
from genevolve_graph.persistence import serializer

TRACE_DB_ENV = "GENEVOLVE_TRACE_DB"


def trace_db_path() -> Path:
    """Where Studio runs are recorded: ``$GENEVOLVE_TRACE_DB`` or the default trace database."""
    raw = os.environ.get(TRACE_DB_ENV, "").strip()
    if raw.startswith("sqlite:///"):  # accept the checkpoint-URL spelling too
        raw = raw[len("sqlite:///") :]
    return Path(raw).expanduser() if raw else default_trace_db()


@contextlib.asynccontextmanager
async def checkpointer() -> AsyncIterator[AsyncSqliteSaver]:
    """An ``AsyncSqliteSaver`` on the trace database, for the dev server's lifetime.

    The folder is created in a worker thread: the dev server rejects blocking file-system
    calls on its event loop.
    """
    import aiosqlite

    path = trace_db_path()
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    async with aiosqlite.connect(str(path)) as conn:
        saver = AsyncSqliteSaver(conn, serde=serializer())
        await saver.setup()
        yield saver


__all__ = ["TRACE_DB_ENV", "checkpointer", "trace_db_path"]
