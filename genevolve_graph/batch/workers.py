"""``ProcessExecutor``: a stage over several worker processes, for endpoints fast enough that
one interpreter's CPU becomes the limit (each agent round costs milliseconds of Python:
LangGraph's step bookkeeping, the chat client, the tools, checkpoint writes).

The parent keeps everything that must happen once: the run folder, the journal (only the
parent writes ``results.jsonl``), the progress bar, the signals. Each worker process gets
the stage itself (pickled; a rollout stage opens its own connection to the same
checkpointer) and every n-th pending row, runs them with a ``LocalExecutor`` holding its
share of the concurrency, and sends each finished record back over a pipe. The parent tells workers to stop scheduling (first Ctrl-C or
SIGTERM) or to cancel (after the grace time, or a second signal); workers ignore the
signals themselves. A worker whose parent disappears (SIGKILL) sees its command pipe close
and cancels its rows at once, so nothing keeps running unrecorded; as always, interrupted
rows continue from their checkpoints on resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from collections.abc import MutableMapping
from typing import Any, Callable

from genevolve_graph.util import event_loop
from genevolve_graph.batch.engine import Sink, Stage, StageSession, StopController
from genevolve_graph.batch.local import LocalExecutor
from genevolve_graph.batch.progress import StageProgress
from genevolve_graph.batch.rows import BatchRow, row_key


def split_concurrency(total: int, workers: int) -> list[int]:
    """``total`` rows in flight spread over ``workers`` (never more than ``total`` in all)."""
    base, extra = divmod(total, workers)
    return [base + (1 if k < extra else 0) for k in range(workers)]


def watch_pipe(loop: asyncio.AbstractEventLoop, connection: Any, callback: Callable[..., None], *args: Any) -> None:
    """Call ``callback(*args)`` whenever ``connection`` (a multiprocessing pipe end) is readable.

    The callbacks read whole messages with the blocking ``recv``; uvloop (libuv) turns a
    watched descriptor non-blocking, and ``recv`` on a message that has only partly arrived
    would then fail as if the other side were gone. So the descriptor is put back to
    blocking: readiness still wakes the loop, and a message is read whole."""
    fd = connection.fileno()
    loop.add_reader(fd, callback, *args)
    os.set_blocking(fd, True)


# --------------------------------------------------------------------------- the worker process


def worker_main(commands: Any, results: Any, payload: dict[str, Any]) -> None:
    """Entry point of a worker process (spawned: nothing is inherited but the payload)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides, and tells us over `commands`
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with lock:  # records come from several threads (one per finishing row)
            results.send(message)

    try:
        event_loop.run(_worker(commands, send, payload))
        send(("done", None))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which stops the stage
        with contextlib.suppress(Exception):
            send(("fatal", f"{type(exc).__name__}: {exc}"))
    finally:
        results.close()


async def _worker(commands: Any, send: Callable[[tuple[str, Any]], None], payload: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    controller = StopController(grace=0.0, notify=lambda message: None)

    def on_command() -> None:
        try:
            message = commands.recv()
        except (EOFError, OSError):  # the parent is gone: nothing can be recorded any more
            loop.remove_reader(commands.fileno())
            message = "cancel"
        if message == "stop":
            controller.stopping = True
        elif message == "cancel":
            controller.cancel_in_flight()

    watch_pipe(loop, commands, on_command)
    rows = [BatchRow(key=key, position=position, data=data) for key, position, data in payload["rows"]]
    session = await LocalExecutor(payload["concurrency"]).execute(
        payload["stage"], rows, sink=lambda record: send(("record", record)), records={}, controller=controller,
        progress=None,
    )
    with contextlib.suppress(ValueError, OSError):
        loop.remove_reader(commands.fileno())
    if controller.fatal is not None:
        raise controller.fatal
    del session


# --------------------------------------------------------------------------- the parent


@dataclass
class _Child:
    index: int
    process: Any
    commands: Any
    results: Any
    done: bool = False
    finished: bool = False


@dataclass
class ProcessExecutor:
    """``workers`` processes sharing ``concurrency`` rows in flight (one row runs here)."""

    concurrency: int
    workers: int

    async def execute(self, stage: Stage, rows: list[BatchRow], *, sink: Sink, records: MutableMapping[str, dict[str, Any]],
                      controller: StopController, progress: StageProgress | None) -> StageSession:
        if self.workers <= 1 or len(rows) <= 1:
            return await LocalExecutor(self.concurrency).execute(stage, rows, sink=sink, records=records,
                                                                 controller=controller, progress=progress)
        return await run_in_processes(rows, stage, concurrency=self.concurrency, workers=self.workers, sink=sink,
                                      records=records, controller=controller, progress=progress)


async def run_in_processes(
    rows: list[BatchRow],
    stage: Stage,
    *,
    concurrency: int,
    workers: int,
    sink: Sink,
    records: MutableMapping[str, dict[str, Any]],
    controller: StopController,
    progress: StageProgress | None,
) -> StageSession:
    """Spread ``rows`` over worker processes; record what they send back, in this process."""
    is_failure = stage.is_failure
    loop = asyncio.get_running_loop()
    count = max(1, min(workers, len(rows), concurrency))
    limits = split_concurrency(concurrency, count)
    context = multiprocessing.get_context("spawn")
    session = StageSession()
    started = time.monotonic()
    children: list[_Child] = []
    appends: set[asyncio.Future[Any]] = set()
    all_finished = asyncio.Event()

    def send_all(message: str) -> None:
        for child in children:
            if not child.finished:
                with contextlib.suppress(OSError, ValueError):
                    child.commands.send(message)

    previous_stop, previous_cancel = controller.on_stop, controller.on_cancel

    def on_stop() -> None:
        send_all("stop")
        if previous_stop:
            previous_stop()

    def on_cancel() -> None:
        send_all("cancel")
        if previous_cancel:
            previous_cancel()

    controller.on_stop, controller.on_cancel = on_stop, on_cancel

    def appended(record: dict[str, Any], future: asyncio.Future[Any]) -> None:
        appends.discard(future)
        if future.cancelled():
            return
        if future.exception() is not None:
            controller.abort(future.exception())
            return
        records[row_key(record["id"])] = record
        failed = is_failure(record)
        session.done += 1
        session.failed += int(failed)
        if progress is not None:
            progress.advance(failed=failed)

    def child_finished(child: _Child) -> None:
        if child.finished:
            return
        child.finished = True
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(child.results.fileno())
        if not child.done and controller.fatal is None:
            code = child.process.exitcode
            controller.abort(RuntimeError(f"worker process {child.index} exited unexpectedly (exit code {code})"))
        if all(c.finished for c in children):
            all_finished.set()

    def on_result(child: _Child) -> None:
        try:
            kind, value = child.results.recv()
        except (EOFError, OSError):
            child_finished(child)
            return
        if kind == "record":
            future = loop.run_in_executor(None, sink, value)
            appends.add(future)
            future.add_done_callback(lambda f, record=value: appended(record, f))
        elif kind == "done":
            child.done = True
        elif kind == "fatal":
            child.done = True
            controller.abort(RuntimeError(f"worker process {child.index}: {value}"))

    try:
        for index in range(count):
            command_recv, command_send = context.Pipe(duplex=False)
            result_recv, result_send = context.Pipe(duplex=False)
            payload = {
                "rows": [(row.key, row.position, row.data) for row in rows[index::count]],
                "stage": stage, "concurrency": limits[index],
            }
            process = context.Process(target=worker_main, args=(command_recv, result_send, payload),
                                      name=f"genevolve-batch-{index}", daemon=True)
            process.start()
            command_recv.close()  # our copies of the workers' ends: closing them makes EOF reach both sides
            result_send.close()
            child = _Child(index, process, command_send, result_recv)
            children.append(child)
            watch_pipe(loop, result_recv, on_result, child)
            if controller.stopping:
                child.commands.send("cancel" if controller.fatal else "stop")
        await all_finished.wait()
        if appends:
            await asyncio.gather(*list(appends), return_exceptions=True)
    except asyncio.CancelledError:
        send_all("cancel")
        raise
    finally:
        for child in children:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(child.results.fileno())
        await loop.run_in_executor(None, _reap, children)
        controller.on_stop, controller.on_cancel = previous_stop, previous_cancel
    session.seconds = time.monotonic() - started
    return session


def _reap(children: list[_Child]) -> None:
    for child in children:
        child.process.join(timeout=30)
        if child.process.is_alive():
            child.process.terminate()
            child.process.join(timeout=5)
        for conn in (child.commands, child.results):
            with contextlib.suppress(OSError):
                conn.close()
