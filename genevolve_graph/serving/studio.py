"""The checkpointer of LangGraph Studio / ``langgraph dev`` runs.

``langgraph.json`` names :func:`checkpointer` as its ``checkpointer.path``, so a thread run
from Studio (or through ``langgraph-sdk`` against the dev server) is recorded in the same
SQLite trace database as ``genevolve-graph run`` and the batch stage, with the same
serializer, and exports like any other run.

The database is ``$GENEVOLVE_TRACE_DB`` when set, else the user's default trace database
(``genevolve_graph.util.paths.default_trace_db()``). Stateless runs (``runs.wait(None, ...)``)
keep no thread and are therefore not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import AsyncIterator

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from genevolve_graph.util.paths import TRACE_DB_ENV, default_trace_db, env_trace_db
from genevolve_graph.persistence import serializer
from genevolve_graph.safety.redaction import redact_text, redact_value


def trace_db_path() -> Path:
    """Where Studio runs are recorded: ``$GENEVOLVE_TRACE_DB`` or the default trace database."""
    return env_trace_db() or default_trace_db()


class RedactingSqliteSaver(AsyncSqliteSaver):
    """The dev server copies a run's context (endpoints included) into checkpoint metadata,
    and the saver merges the config's metadata and ``configurable`` strings into it: URLs
    in all of them lose their credentials before they are written (docs/security.md)."""

    async def aput(self, config, checkpoint, metadata, new_versions):  # type: ignore[no-untyped-def]
        # the saver merges the config's metadata into what it writes: redact both
        configurable = {k: redact_text(v) if isinstance(v, str) else v for k, v in (config.get("configurable") or {}).items()}
        config = {**config, "configurable": configurable, "metadata": redact_value(dict(config.get("metadata") or {}))}
        return await super().aput(config, checkpoint, redact_value(metadata), new_versions)


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
        saver = RedactingSqliteSaver(conn, serde=serializer())
        await saver.setup()
        yield saver


__all__ = ["TRACE_DB_ENV", "checkpointer", "trace_db_path"]
