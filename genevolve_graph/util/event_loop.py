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
import gc
import os
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


__all__ = ["CHOICES", "loop_kind", "run"]
