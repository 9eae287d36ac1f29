"""genevolve-graph: a LangGraph agent that writes and renders GenEvolve prompt-reference programs."""

from genevolve_graph.agent.factory import create_genevolve_agent
from genevolve_graph.core.context import AgentContext
from genevolve_graph.agent.graph import build_builder, build_graph
from genevolve_graph.core.state import Program, Reference, RenderResult

__all__ = ["AgentContext", "Program", "Reference", "RenderResult", "build_builder", "build_graph", "create_genevolve_agent"]
__version__ = "0.1.0"
