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
    """``asyncio.run(main)`` on the loop ``loop_kind()`` names."""
    if loop_kind() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


__all__ = ["CHOICES", "loop_kind", "run"]
