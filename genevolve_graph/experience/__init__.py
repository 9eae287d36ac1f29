"""Experience that outlives a run: the Decision Guide type, the rolling experience buffer, the
embedders that index it, and the guide memory the planner reads at inference.

It sits below both the agent (``nodes.planner`` retrieves guides) and the trainer
(``training`` distils and stores them), so neither imports the other.
"""
