"""Small helpers the nodes share."""

from __future__ import annotations

from typing import Any

import asyncio
import concurrent.futures
from typing import Awaitable, Callable

from langchain_core.runnables import RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.runtime import get_runtime

from genevolve_graph.context import AgentContext


def current_context() -> AgentContext:
    """The run's context as an ``AgentContext`` (Studio and the SDK pass plain dicts)."""
    return AgentContext.coerce(get_runtime().context)


def dual_node(afunc: Callable[[Any], Awaitable[dict[str, Any]]], name: str) -> RunnableLambda:
    """An async node that also runs under the sync API (``graph.invoke``, a sync chain).

    The sync path runs the coroutine on a private event loop (in a worker thread when the
    calling thread already has a loop, as in a notebook cell), with the caller's context
    variables, so the runtime and stream writer stay reachable.
    """

    def func(state: Any) -> dict[str, Any]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(afunc(state))
        import contextvars

        ctx = contextvars.copy_context()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(ctx.run, asyncio.run, afunc(state)).result()

    return RunnableLambda(func, afunc=afunc, name=name)


def emit(event: str, **data: Any) -> None:
    """A custom progress event for ``stream_mode="custom"`` (ignored when nobody listens)."""
    try:
        writer = get_stream_writer()
    except RuntimeError:  # outside a graph run
        return
    writer({"event": event, **data})
