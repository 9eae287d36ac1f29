"""The agent's vocabulary: the GenEvolve text protocol, the graph state and its models, the run
context (and the typed reader of its options), the backend registries, the guard that
confines a caller's context, tracing names, and human-readable trajectories.

``genevolve_graph.state``, ``.protocol``, ``.context`` and ``.registry`` are public aliases of
these modules (docs/extending.md).
"""
