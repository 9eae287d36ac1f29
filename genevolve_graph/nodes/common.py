"""Small helpers the nodes share."""

from __future__ import annotations

from typing import Any

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from genevolve_graph.context import AgentContext


def context_of(runtime: Runtime[Any]) -> AgentContext:
    """The run's context as an ``AgentContext`` (Studio and the SDK pass plain dicts)."""
    return AgentContext.coerce(runtime.context)


def emit(event: str, **data: Any) -> None:
    """A custom progress event for ``stream_mode="custom"`` (ignored when nobody listens)."""
    try:
        writer = get_stream_writer()
    except RuntimeError:  # outside a graph run
        return
    writer({"event": event, **data})
