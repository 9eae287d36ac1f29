"""The agent assembled: the graph, the ``create_genevolve_agent`` factory, the runner that
records a trajectory, and the adapters that embed the agent in other applications.

``from genevolve_graph.agent import create_genevolve_agent`` keeps working (the factory's
module was ``genevolve_graph.agent`` before the package grew).
"""

from genevolve_graph.agent.factory import create_genevolve_agent

__all__ = ["create_genevolve_agent"]
