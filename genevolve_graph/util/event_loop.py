"""The event loop the command line runs its coroutines on: uvloop where it is installed.

Why: a batch of rollouts is a few thousand small HTTP exchanges and LangGraph steps, and
about a fifth of their client CPU is the event loop's own bookkeeping (scheduling,
selectors, transports). uvloop does the same work in C: about 0.9 ms less per policy
round (``benchmarks/graph_overhead.py``). It is a core dependency on Linux and macOS;
``GENEVOLVE_EVENT_LOOP=asyncio`` selects the standard loop (for debugging, or a library
that insists on it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import os
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

CHOICES = ("uvloop", "asyncio")


def loop_kind() -> str:
    """``uvloop`` when it is installed and not switched off, else ``asyncio``."""
    wanted = os.environ.get("GENEVOLVE_EVENT_LOOP", "uvloop").strip().lower() or "uvloop"
    if wanted not in CHOICES:
        raise ValueError(f"GENEVOLVE_EVENT_LOOP={wanted!r}: choose one of {', '.join(CHOICES)}")
    if wanted == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:  # Windows, or an install without it
            return "asyncio"
    return wanted


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop ``loop_kind()`` names.

    Before the loop starts, the objects alive now (the imported modules, classes and
    compiled schemas: most of the heap of a command) are moved out of the cyclic garbage
    collector's sight (``gc.freeze``). They live as long as the process anyway, and every
    full collection would otherwise walk them again: at batch sizes that was about 0.15 ms
    of CPU per policy round, in pauses of a tenth of a second. They return to the collector
    when the run ends (``gc.unfreeze``), for callers that go on (tests, notebooks)."""
    try:
        kind = loop_kind()
    except ValueError:
        main.close()  # never started: no "coroutine was never awaited" warning on top of the error
        raise
    gc.freeze()
    try:
        if kind == "uvloop":
            import uvloop

            return uvloop.run(main)
        return asyncio.run(main)
    finally:
        gc.unfreeze()


class _SyncLoop:
    """One event loop, on a daemon thread, that every synchronous graph run shares.

    Why: a sync run (``graph.invoke``, ``stream``, ``batch``) executes async nodes one step
    at a time. Running each step under its own ``asyncio.run`` closed the loop after every
    step, and an async HTTP client that a previous step had used (a ``ChatOpenAI``'s pool
    with a kept-alive connection, our own cached policy clients) was then bound to a closed
    loop: the second policy round failed with "Event loop is closed". On one loop that
    lives as long as the process, clients and their pools stay valid from step to step and
    from run to run, exactly as in an async run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or not (self._thread and self._thread.is_alive()):
                loop = asyncio.new_event_loop()  # a forked child gets its own loop and thread
                thread = threading.Thread(target=loop.run_forever, name="genevolve-sync-loop", daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def on_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` on the shared loop with the caller's context variables and wait for it."""
        context = contextvars.copy_context()
        loop = self.loop()
        future: concurrent.futures.Future = context.run(asyncio.run_coroutine_threadsafe, main, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # KeyboardInterrupt in the caller: stop the step, too
            raise


_SYNC_LOOP = _SyncLoop()
_IN_SYNC_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("genevolve_in_sync_run", default=False)


def in_sync_run() -> bool:
    """True inside a coroutine that ``run_sync`` runs for synchronous code.

    A caller's own chat model may hold an async HTTP client bound to the caller's event
    loop; in a sync run the policy calls the model's sync API instead (in a worker thread),
    so the two kinds of run never share one async client across loops."""
    return _IN_SYNC_RUN.get()


def run_sync(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine for synchronous code, on the one loop that sync runs share.

    Called from that loop's own thread (a sync graph nested inside a sync node of a graph
    that runs there), waiting on it would deadlock, so that call gets a private loop in a
    worker thread instead."""
    token = _IN_SYNC_RUN.set(True)  # copied into the coroutine's context below
    try:
        return _run_sync(main)
    finally:
        _IN_SYNC_RUN.reset(token)


def _run_sync(main: Coroutine[Any, Any, T]) -> T:
    if _SYNC_LOOP.on_loop_thread():
        context = contextvars.copy_context()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(context.run, asyncio.run, main).result()
    return _SYNC_LOOP.run(main)


__all__ = ["CHOICES", "in_sync_run", "loop_kind", "run", "run_sync"]
