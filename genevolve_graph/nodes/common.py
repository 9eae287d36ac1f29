"""Small helpers the nodes share."""

from __future__ import annotations

from typing import Any

import asyncio
from typing import Awaitable, Callable

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_config, get_stream_writer
from langgraph.runtime import get_runtime

from genevolve_graph.core.context import AgentContext, with_defaults
from genevolve_graph.util.event_loop import run_sync

CONTEXT_DEFAULTS_KEY = "genevolve_context_defaults"
"""``configurable`` key of the context defaults a ``create_genevolve_agent`` graph carries."""


def current_context() -> AgentContext:
    """The run's context as an ``AgentContext`` (Studio and the SDK pass plain dicts), on top
    of the defaults the graph was created with, if any."""
    context = get_runtime().context
    defaults = get_config().get("configurable", {}).get(CONTEXT_DEFAULTS_KEY)
    if defaults:
        return with_defaults(context, defaults)
    return AgentContext.coerce(context)


async def checked_context(confine: bool = False) -> AgentContext:
    """The run's context, confined by ``genevolve_graph.core.guard`` when it came from a caller
    (a dict) or when the graph serves callers (``confine``). The check resolves paths, so
    it runs in a worker thread (the dev server forbids blocking calls on its loop)."""
    from genevolve_graph.core.guard import check_caller_context, is_caller_context

    ctx = current_context()
    if confine or is_caller_context(ctx):
        await asyncio.to_thread(check_caller_context, ctx)
    return ctx


class DualNode(Runnable[Any, dict[str, Any]]):
    """An async node that also runs under the sync API (``graph.invoke``, a sync chain).

    A bare ``Runnable`` rather than ``RunnableLambda``: LangGraph already traces the node,
    and a lambda would configure a second callback manager on every call (about 0.4 ms).
    The sync path runs the coroutine on the one event loop that synchronous runs share
    (``util.event_loop.run_sync``), with the caller's context variables, so the runtime and
    stream writer stay reachable. A loop per step would close under the async HTTP clients
    that the next step reuses (issue 24: "Event loop is closed" on the second round).
    """

    def __init__(self, afunc: Callable[[Any], Awaitable[Any]], name: str) -> None:
        self.afunc = afunc
        self.name = name

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return await self.afunc(input)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return run_sync(self.afunc(input))


def dual_node(afunc: Callable[[Any], Awaitable[dict[str, Any]]], name: str) -> DualNode:
    return DualNode(afunc, name)


def emit(event: str, **data: Any) -> None:
    """A custom progress event for ``stream_mode="custom"`` (ignored when nobody listens)."""
    try:
        writer = get_stream_writer()
    except RuntimeError:  # outside a graph run
        return
    writer({"event": event, **data})
