"""Checkpointer factory: ``memory`` | ``sqlite:///path`` | ``postgresql://...``.

Every saver gets a serializer that allows exactly this package's models, so checkpoints
deserialize under ``LANGGRAPH_STRICT_MSGPACK`` and nothing else is revived from a file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import AsyncIterator, Iterator

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

ALLOWED_MODELS = [
    ("genevolve_graph.state", "Reference"),
    ("genevolve_graph.state", "Program"),
    ("genevolve_graph.state", "RenderResult"),
]


class CheckpointURLError(ValueError):
    """A checkpoint URL this factory does not understand."""


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=ALLOWED_MODELS)


def parse_url(url: str) -> tuple[str, str]:
    """``(kind, target)``: ('memory', ''), ('sqlite', path) or ('postgres', url)."""
    url = (url or "").strip()
    if url == "memory":
        return "memory", ""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise CheckpointURLError("checkpoint URL 'sqlite:///' has no path; use sqlite:///path/to/trace.sqlite")
        return "sqlite", path
    if url.startswith(("postgresql://", "postgres://")):
        return "postgres", url
    raise CheckpointURLError(
        f"invalid checkpoint URL {url!r}; use 'memory', 'sqlite:///path/to/trace.sqlite' or 'postgresql://user:pass@host/db'"
    )


def _sqlite_path(path: str) -> str:
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    return str(target)


@contextlib.asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[BaseCheckpointSaver]:
    """An async saver for graph runs (the graph's nodes are async)."""
    kind, target = parse_url(url)
    if kind == "memory":
        yield InMemorySaver(serde=serializer())
    elif kind == "sqlite":
        import aiosqlite

        from genevolve_graph.sqlite_saver import LeanAsyncSqliteSaver

        async with aiosqlite.connect(_sqlite_path(target)) as conn:
            # WAL (set by setup) with synchronous=NORMAL: durable across process crashes,
            # one fsync per checkpoint instead of several.
            await conn.execute("PRAGMA synchronous=NORMAL")
            saver = LeanAsyncSqliteSaver(conn, serde=serializer())  # the stock saver, one hand-off per write
            await saver.setup()
            yield saver
    else:
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError:
            raise CheckpointURLError("PostgreSQL checkpoints need the postgres extra: pip install 'genevolve-graph[postgres]'") from None
        async with AsyncPostgresSaver.from_conn_string(target, serde=serializer()) as saver:
            await saver.setup()
            yield saver


@contextlib.contextmanager
def open_checkpointer_sync(url: str) -> Iterator[BaseCheckpointSaver]:
    """A sync saver for reading traces (export, notebooks)."""
    kind, target = parse_url(url)
    if kind == "memory":
        yield InMemorySaver(serde=serializer())
    elif kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(_sqlite_path(target), check_same_thread=False)
        try:
            saver = SqliteSaver(conn, serde=serializer())
            saver.setup()
            yield saver
        finally:
            conn.close()
    else:
        try:
            from langgraph.checkpoint.postgres import PostgresSaver
        except ImportError:
            raise CheckpointURLError("PostgreSQL checkpoints need the postgres extra: pip install 'genevolve-graph[postgres]'") from None
        from psycopg import Connection
        from psycopg.rows import dict_row

        # The sync PostgresSaver.from_conn_string takes no serde: open the connection as it does.
        with Connection.connect(target, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
            saver = PostgresSaver(conn, serde=serializer())
            saver.setup()
            yield saver
