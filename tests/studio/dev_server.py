"""The tests' ``langgraph dev`` helpers (in ``genevolve_graph.testing.langgraph_dev``, which
the benchmarks share)."""

from genevolve_graph.testing.langgraph_dev import ANSI, DevServer, bound_port, free_port, langgraph_dev, server_folder, stop

__all__ = ["ANSI", "DevServer", "bound_port", "free_port", "langgraph_dev", "server_folder", "stop"]
