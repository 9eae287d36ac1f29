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

from genevolve_graph.core.checkpoint_types import STATE_TYPES

ALLOWED_MODELS = list(STATE_TYPES)  # also registered process-wide (core.checkpoint_types)


class CheckpointURLError(ValueError):
    """A checkpoint URL this factory does not understand."""


class CheckpointFileError(CheckpointURLError):
    """A ``sqlite:///`` checkpoint that names a file which is not a usable SQLite database
    (random bytes, another kind of file, a copy cut short). The file is left as it is."""


SQLITE_MAGIC = b"SQLite format 3\x00"
_FIX = "point --checkpoint at the run's trace database, or move this file away to start a new one"


def check_sqlite_file(path: str | Path) -> None:
    """Raise :class:`CheckpointFileError` when ``path`` exists but is not a readable SQLite
    database; a missing or empty file is fine (SQLite starts a new one there).

    Only reads: the header, the file size it promises, and the schema through a read-only
    connection. Opening a damaged file read-write could otherwise write a journal or new
    tables into it; this way nothing is written over a file that is not ours.
    """
    target = Path(path).expanduser()
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CheckpointFileError(f"cannot read the checkpoint database {target}: {exc.strerror or exc}") from None
    if target.is_dir():
        raise CheckpointFileError(f"the checkpoint database {target} is a folder; pass a file path such as {target / 'trace.sqlite'}")
    if size == 0:
        return
    try:
        with open(target, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise CheckpointFileError(f"cannot read the checkpoint database {target}: {exc.strerror or exc}") from None
    if not header.startswith(SQLITE_MAGIC):
        raise CheckpointFileError(
            f"the checkpoint database {target} is not a SQLite database (it starts with {header[:16]!r}); {_FIX}"
        )
    if len(header) < 100:
        raise CheckpointFileError(f"the checkpoint database {target} is truncated ({size} bytes, shorter than its header); {_FIX}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_size_valid = header[24:28] == header[92:96]
    wal = target.with_name(target.name + "-wal")
    wal_pending = wal.is_file() and wal.stat().st_size > 0  # a checkpoint may have been cut short; SQLite recovers it
    if header_size_valid and pages and not wal_pending and size < pages * page_size:
        raise CheckpointFileError(
            f"the checkpoint database {target} is truncated ({size} of {pages * page_size} bytes; a copy cut short?); {_FIX}"
        )
    # Without a pending WAL, ``immutable=1`` reads the file alone: no lock, and no -wal/-shm
    # files are created beside a file that may not be a database of ours.
    flags = "mode=ro" if wal_pending else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"{target.resolve().as_uri()}?{flags}", uri=True)
    except sqlite3.Error as exc:
        raise CheckpointFileError(f"cannot open the checkpoint database {target}: {exc}; {_FIX}") from None
    try:
        conn.execute("SELECT name, sql FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as exc:
        raise CheckpointFileError(f"the checkpoint database {target} is damaged ({exc}); {_FIX}") from None
    finally:
        conn.close()


def check_checkpoint(url: str) -> None:
    """Check a checkpoint URL before use: its form, and for SQLite the file it names."""
    kind, target = parse_url(url)
    if kind == "sqlite":
        check_sqlite_file(target)


def _unusable(target: str, exc: sqlite3.DatabaseError) -> CheckpointFileError:
    return CheckpointFileError(f"the checkpoint database {target} cannot be used ({exc}); {_FIX}")


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

        from genevolve_graph.persistence.sqlite_saver import LeanAsyncSqliteSaver

        check_sqlite_file(target)
        # check_same_thread=False: the saver writes on this thread (inline_writes), reads on aiosqlite's.
        async with aiosqlite.connect(_sqlite_path(target), check_same_thread=False) as conn:
            # WAL (set by setup) with synchronous=NORMAL: durable across process crashes,
            # one fsync per WAL checkpoint instead of several per write.
            try:
                await conn.execute("PRAGMA synchronous=NORMAL")
                saver = LeanAsyncSqliteSaver(conn, serde=serializer(), inline_writes=True)
                await saver.setup()
            except sqlite3.DatabaseError as exc:
                raise _unusable(target, exc) from None
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

        check_sqlite_file(target)
        conn = sqlite3.connect(_sqlite_path(target), check_same_thread=False)
        try:
            saver = SqliteSaver(conn, serde=serializer())
            try:
                saver.setup()
            except sqlite3.DatabaseError as exc:
                raise _unusable(target, exc) from None
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
