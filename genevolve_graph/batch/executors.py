"""Where a stage's row functions run, behind one small interface (``engine.Executor``).

- ``LocalExecutor`` (``batch.local``): on this event loop, ``concurrency`` rows in flight (the default).
- ``ProcessExecutor`` (``batch.workers``): over worker processes, each an event loop with
  its share of the concurrency, for endpoints so fast that one interpreter's CPU is the limit.
- ``ServerExecutor`` (``batch.server``): each row a background run of the graph deployed on a
  LangGraph Server, for runs that outgrow one machine.

``executor_for`` picks one from the command-line choices.
"""

from __future__ import annotations

from typing import Any

from genevolve_graph.batch.engine import Executor
from genevolve_graph.batch.local import LocalExecutor
from genevolve_graph.batch.workers import ProcessExecutor


def executor_for(*, concurrency: int, workers: int = 1, server: str | None = None, **server_options: Any) -> Executor:
    """The executor for ``--concurrency``, ``--workers`` and ``--server``."""
    if server:
        from genevolve_graph.batch.server import ServerExecutor

        return ServerExecutor(url=server, concurrency=concurrency, **server_options)
    if workers > 1:
        return ProcessExecutor(concurrency=concurrency, workers=workers)
    return LocalExecutor(concurrency)


__all__ = ["Executor", "LocalExecutor", "ProcessExecutor", "executor_for"]
