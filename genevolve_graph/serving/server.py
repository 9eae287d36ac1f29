"""The graph as the LangGraph API server loads it (``langgraph dev``, ``langgraph up``, a
deployment): ``langgraph.json`` names :func:`make_graph`.

The server quietly drops context keys its schema does not know before the graph sees them,
so a misspelt setting (``max_round``) would run with the default. The server hands a graph
factory the run's context as the caller sent it, so this factory checks it first: an
unknown key or an unknown backend name fails the run with a one-line error naming the field
and the choices, exactly as in-process. The graph itself is built once, without a
checkpointer: the server brings its own (in-memory for ``langgraph dev``, Postgres for a
deployment), and ``langgraph.studio.json`` adds the SQLite trace file for ``make studio``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langgraph.graph.state import CompiledStateGraph

from genevolve_graph.core.context import AgentContext
from genevolve_graph.agent.graph import graph
from genevolve_graph.core.tracing import default_tags

if TYPE_CHECKING:
    from langgraph_sdk.runtime import ServerRuntime


def for_run(served: CompiledStateGraph, runtime: ServerRuntime) -> CompiledStateGraph:
    """``served`` after checking the run's context (only runs carry one); a run's graph
    carries the default trace tags (``genevolve``, the policy, the experiment)."""
    context: Any = getattr(runtime, "context", None)
    if context:
        ctx = AgentContext.coerce(dict(context) if not isinstance(context, AgentContext) else context)
        return served.with_config(tags=default_tags(ctx.policy, ctx.experiment))
    return served


def make_graph(runtime: ServerRuntime) -> CompiledStateGraph:
    """The agent graph for a run (:func:`for_run`)."""
    return for_run(graph, runtime)


__all__ = ["for_run", "make_graph"]
