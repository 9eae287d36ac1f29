"""The agent graph: ``START → planner → (tools → planner)* → binder → emitter → [review] → [render] → END``.

``build_builder`` returns the uncompiled ``StateGraph`` (reusable as a subgraph);
``build_graph`` compiles it with the caller's checkpointer. The module-level ``graph`` has
no checkpointer: LangGraph Studio and ``langgraph dev`` supply their own.
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from genevolve_graph.core.context import AgentContext
from genevolve_graph.nodes.binder import binder
from genevolve_graph.nodes.common import dual_node
from genevolve_graph.nodes.emitter import emitter, route_after_emitter
from genevolve_graph.nodes.planner import PLANNER_DESTINATIONS, make_planner
from genevolve_graph.nodes.render import make_render_node
from genevolve_graph.nodes.reply import acloses_chat, closes_chat
from genevolve_graph.nodes.review import review, route_after_review
from genevolve_graph.nodes.tools import make_tools_node
from genevolve_graph.nodes.services import Services
from genevolve_graph.core.state import AgentState, InputState, OutputState

GRAPH_NAME = "genevolve"


def build_builder(
    *,
    policy: Any = None,
    search: Any = None,
    image_search: Any = None,
    skills: Any = None,
    renderer: Any = None,
    confine: bool = False,
) -> StateGraph:
    """The uncompiled graph. Objects passed here replace those built from the context.

    ``confine``: treat every run's context as a caller's (endpoints and paths checked by
    ``genevolve_graph.core.guard``), for a graph served to callers. Dict contexts are confined
    either way."""
    services = Services(policy=policy, search=search, image_search=image_search, skills=skills, renderer=renderer, confine=confine)
    builder = StateGraph(AgentState, context_schema=AgentContext, input_schema=InputState, output_schema=OutputState)
    builder.add_node("planner", dual_node(make_planner(services), "planner"), destinations=PLANNER_DESTINATIONS)  # routes itself
    builder.add_node("tools", dual_node(make_tools_node(services), "tools"))
    builder.add_node("binder", binder)
    builder.add_node("emitter", closes_chat(emitter))  # a chat run (messages input) ends with a closing AIMessage
    builder.add_node("review", closes_chat(review))
    builder.add_node("render", dual_node(acloses_chat(make_render_node(services)), "render"))
    builder.add_edge(START, "planner")
    builder.add_edge("tools", "planner")
    builder.add_edge("binder", "emitter")
    builder.add_conditional_edges("emitter", route_after_emitter, ["review", "render", END])
    builder.add_conditional_edges("review", route_after_review, ["render", END])
    builder.add_edge("render", END)
    return builder


def build_graph(
    checkpointer: BaseCheckpointSaver | None = None,
    *,
    store: BaseStore | None = None,
    name: str = GRAPH_NAME,
    **services: Any,
) -> CompiledStateGraph:
    """A compiled agent graph with the caller's checkpointer (``None``: no persistence)."""
    return build_builder(**services).compile(checkpointer=checkpointer, store=store, name=name)


def recursion_limit(ctx: AgentContext) -> int:
    """Enough supersteps for the budget: two per round plus binder, emitter and render."""
    return 2 * ctx.max_rounds + 10


graph = build_graph(confine=True)
"""For LangGraph Studio / ``langgraph dev`` (which brings its own checkpointer). Its callers
are remote, so every context is confined (docs/security.md)."""
