"""``AsyncSqliteSaver`` with one thread hand-off per write and compact channel versions.

Why: aiosqlite runs every call (``execute``, ``commit``, cursor open and close) on its own
thread, and each call is a round trip through the event loop. LangGraph's saver spends
three to four of them on each checkpoint and each task's writes, about nineteen per policy
round, which at batch sizes cost more CPU than the work itself. Here each write is one
function run on aiosqlite's thread: the same SQL, the same rows, the same commit.

Channel versions: LangGraph's SQLite savers write ``"<32 digits>.<random float>"`` for
every version (about 50 bytes, some twenty of them in every checkpoint). The random part
matters to savers that store channel values under their version (the Postgres and
in-memory savers' blob tables, where two forks may reach the same number); the SQLite
saver stores the values inside each checkpoint, so the number alone identifies them. This
saver writes the zero-padded number only. It compares with the old form as the old form
compares with itself (the 32-digit prefix decides), so threads written by the stock saver
continue unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, ChannelVersions, Checkpoint, CheckpointMetadata, get_checkpoint_metadata
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

_PUT = ("INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)")
_WRITES_REPLACE = ("INSERT OR REPLACE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_WRITES_IGNORE = _WRITES_REPLACE.replace("INSERT OR REPLACE", "INSERT OR IGNORE")


class LeanAsyncSqliteSaver(AsyncSqliteSaver):
    """The stock async SQLite saver, writing the same rows in one hand-off each.

    ``inline_writes``: run each write on the event loop's thread instead of aiosqlite's.
    A write here is one small transaction on a WAL file with ``synchronous=NORMAL``: about
    30 µs of SQLite and no fsync (the one fsync comes with the WAL's auto-checkpoint,
    every thousand pages). Handing it to aiosqlite's thread and back costs more than that
    in wake-ups and interpreter-lock hand-overs (about 0.4 ms of CPU per policy round,
    ``benchmarks/graph_overhead.py``), so a process that owns its database writes inline,
    as LangGraph's synchronous saver does on its caller's thread. The connection must
    allow use from another thread (``check_same_thread=False``); reads stay on aiosqlite's
    thread, and every call holds the saver's lock, so the two never overlap.
    ``open_checkpointer`` opens its connections that way; a connection of your own keeps
    the default (``False``: every write through aiosqlite).
    """

    def __init__(self, conn: Any, *, serde: Any = None, inline_writes: bool = False) -> None:
        super().__init__(conn, serde=serde)
        self.inline_writes = inline_writes

    def _run_and_commit(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """The statement(s), then the commit (on aiosqlite's thread, or inline)."""
        conn = self.conn._conn
        if len(rows) == 1:
            conn.execute(sql, rows[0])
        else:
            conn.executemany(sql, rows)
        conn.commit()

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        await self.setup()
        configurable = config["configurable"]
        thread_id, checkpoint_ns = configurable["thread_id"], configurable["checkpoint_ns"]
        type_, serialized = self.serde.dumps_typed(checkpoint)
        serialized_metadata = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False).encode("utf-8", "ignore")
        row = (str(thread_id), checkpoint_ns, checkpoint["id"], configurable.get("checkpoint_id"), type_, serialized, serialized_metadata)
        await self._write(_PUT, [row])
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint["id"]}}

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        if not writes:
            return
        query = _WRITES_REPLACE if all(w[0] in WRITES_IDX_MAP for w in writes) else _WRITES_IGNORE
        await self.setup()
        configurable = config["configurable"]
        head = (str(configurable["thread_id"]), str(configurable["checkpoint_ns"]), str(configurable["checkpoint_id"]), task_id, task_path)
        rows = [(*head, WRITES_IDX_MAP.get(channel, idx), channel, *self.serde.dumps_typed(value))
                for idx, (channel, value) in enumerate(writes)]
        await self._write(query, rows)

    async def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        async with self.lock:
            if self.inline_writes:
                self._run_and_commit(sql, rows)
            else:
                await self.conn._execute(self._run_and_commit, sql, rows)

    def get_next_version(self, current: str | int | None, channel: None = None) -> str:
        """The next version, zero-padded to 32 digits, without the random suffix."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(current.split(".")[0])
        return f"{number + 1:032}"
