"""``ServerExecutor``: every row a background run of the graph deployed on a LangGraph Server.

For runs that outgrow one machine: the server (self-hosted with Postgres and a task queue,
or the platform) queues, retries and spreads the runs over its workers; this process only
submits, waits and records. Through langgraph-sdk:

- one thread per row, with a thread id derived from the run id and the row id (uuid5), and
  ``row_id``, ``run_id`` (``batch_run`` on the thread, where the server reserves ``run_id``)
  and ``stage`` in its metadata;
- at most ``concurrency`` rows in flight; each row is ``threads.create`` (a no-op when the
  thread exists), then a background ``runs.create`` and ``runs.join``;
- each record is appended to ``results.jsonl`` as its run finishes (the engine's journal);
- resume: the threads of the run are found by their metadata; a finished thread is recorded
  without a new run, a run still going on the server is joined, and a thread stopped part
  way continues from its last checkpoint. Nothing runs twice.

A stopped session leaves the rows in flight running on the server (they are background
runs); the next session joins or collects them. The policy key is never sent: the server
uses its own environment. The server's replies are data: each is capped in size and each
join in time (``net.langgraph_api``), and a row that breaks a limit fails alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from dataclasses import dataclass
from collections.abc import MutableMapping
from typing import Any, Protocol

from genevolve_graph.batch.engine import Sink, Stage, StageSession, StopController, run_stage
from genevolve_graph.batch.progress import StageProgress
from genevolve_graph.batch.rows import BatchRow
from genevolve_graph.net.langgraph_api import DEFAULT_JOIN_TIMEOUT, DEFAULT_MAX_REPLY_BYTES, capped_client, within_deadline

THREAD_NAMESPACE = uuid.UUID("5b0c1f3e-6f0a-4d59-9a55-2c61c7e0b6a1")
ACTIVE = ("pending", "running")


class RemoteStage(Stage, Protocol):
    """A stage that can run as a graph on a server: its input, context and record."""

    run_id: str

    def thread_label(self, row: BatchRow) -> str: ...

    def remote_input(self, row: BatchRow) -> dict[str, Any]: ...

    def remote_context(self) -> dict[str, Any]: ...

    def remote_record(self, row: BatchRow, thread_id: str, values: dict[str, Any], seconds: float) -> dict[str, Any]: ...

    # Optional: ``remote_skip(row) -> record | None``, a row's record decided without a run
    # (the render stage's rows without a program under ``--fallback skip``).


def server_thread_id(label: str) -> str:
    """The server thread of a row: the same row of the same run always maps to the same id."""
    return str(uuid.uuid5(THREAD_NAMESPACE, label))


@dataclass
class ServerExecutor:
    """Rows as background runs of ``assistant`` on the LangGraph Server at ``url``."""

    url: str
    concurrency: int
    assistant: str = "genevolve"
    api_key: str | None = None
    durability: str | None = None
    join_timeout: float = DEFAULT_JOIN_TIMEOUT
    """Seconds one row's run may take, joined; past it the row fails (its run may go on there)."""
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    """Largest reply (a thread's state) accepted from the server."""

    async def execute(self, stage: Stage, rows: list[BatchRow], *, sink: Sink, records: MutableMapping[str, dict[str, Any]],
                      controller: StopController, progress: StageProgress | None) -> StageSession:
        if not hasattr(stage, "remote_input"):
            raise ValueError(f"the {stage.name} stage cannot run on a LangGraph Server; run it without --server")
        client = capped_client(self.url, self.api_key, max_reply_bytes=self.max_reply_bytes)
        known = await self._threads_of_run(client, stage)  # type: ignore[arg-type]

        skip = getattr(stage, "remote_skip", None)

        async def worker(row: BatchRow) -> dict[str, Any]:
            if skip is not None and (record := skip(row)) is not None:
                return record  # nothing to run for this row (the stage's own record)
            started = time.monotonic()
            thread_id = server_thread_id(stage.thread_label(row))  # type: ignore[attr-defined]
            values = await self._run_row(client, stage, row, thread_id, exists=thread_id in known)  # type: ignore[arg-type]
            return stage.remote_record(row, thread_id, values, time.monotonic() - started)  # type: ignore[attr-defined]

        return await run_stage(rows, worker, sink=sink, records=records, concurrency=self.concurrency,
                               controller=controller, progress=progress, is_failure=stage.is_failure, failure=stage.failure)

    async def _threads_of_run(self, client: Any, stage: RemoteStage) -> set[str]:
        """The ids of the threads this run already has on the server (found by metadata)."""
        found: set[str] = set()
        offset, page = 0, 1000
        while True:
            threads = await client.threads.search(metadata={"batch_run": stage.run_id, "stage": stage.name}, limit=page,
                                                  offset=offset, select=["thread_id"])
            found.update(t["thread_id"] for t in threads)
            if len(threads) < page:
                return found
            offset += page

    async def _run_row(self, client: Any, stage: RemoteStage, row: BatchRow, thread_id: str, *, exists: bool) -> dict[str, Any]:
        # LangGraph Server keeps ``run_id`` for its own runs (it is dropped from a thread's
        # metadata), so the batch run is also stored as ``batch_run``, which resume searches by.
        metadata = {"row_id": row.key, "run_id": stage.run_id, "batch_run": stage.run_id, "stage": stage.name}
        graph_input: dict[str, Any] | None = await asyncio.to_thread(stage.remote_input, row)  # may read files
        if exists:
            runs = await client.runs.list(thread_id, limit=100)
            active = [r for r in runs if r.get("status") in ACTIVE]
            if active:  # still queued or running on the server since an earlier session: wait for it
                return await self._join(client, thread_id, active[0]["run_id"])
            state = await client.threads.get_state(thread_id)
            if state.get("values") and not state.get("next"):
                return state["values"]  # finished in an earlier session: recorded without a new run
            if runs or state.get("values"):
                graph_input = None  # stopped part way: continue from the last checkpoint
        else:
            await client.threads.create(thread_id=thread_id, if_exists="do_nothing", metadata=metadata)
        options: dict[str, Any] = {"durability": self.durability} if self.durability else {}
        try:
            run = await client.runs.create(thread_id, self.assistant, input=graph_input, context=stage.remote_context(),
                                           metadata=metadata, multitask_strategy="reject", **options)
        except Exception as exc:  # a run of an earlier session, created as it stopped, holds the thread: wait for it
            if getattr(getattr(exc, "response", None), "status_code", None) != 409:
                raise
            return await self._join(client, thread_id, await self._active_run(client, thread_id))
        return await self._join(client, thread_id, run["run_id"])

    async def _active_run(self, client: Any, thread_id: str, timeout: float = 30.0) -> str:
        """The run that holds a busy thread (it may take a moment to be listed)."""
        deadline = time.monotonic() + timeout
        while True:
            for run in await client.runs.list(thread_id, limit=100):
                if run.get("status") in ACTIVE:
                    return run["run_id"]
            if time.monotonic() > deadline:
                raise RuntimeError(f"thread {thread_id} is busy on the server but lists no active run")
            await asyncio.sleep(0.2)

    async def _join(self, client: Any, thread_id: str, run_id: str) -> dict[str, Any]:
        await within_deadline(client.runs.join(thread_id, run_id), self.join_timeout, f"server run {run_id} of thread {thread_id}")
        run = await client.runs.get(thread_id, run_id)
        state = await client.threads.get_state(thread_id)
        if run.get("status") != "success":
            raise RuntimeError(f"server run {run_id} of thread {thread_id} ended with status {run.get('status')!r}")
        return state.get("values") or {}


def context_for_server(ctx: Any) -> dict[str, Any]:
    """The run's context as the server's context form takes it: the fields set (no secrets
    are in the context; the server reads its own keys)."""
    local_only = {"output_dir"} if ctx.renderer == "none" else set()  # a folder of this machine, unused there
    return {name: value for name, value in dataclasses.asdict(ctx).items()
            if value not in ("", None, {}) and name not in local_only}


__all__ = ["ServerExecutor", "RemoteStage", "server_thread_id", "context_for_server"]
