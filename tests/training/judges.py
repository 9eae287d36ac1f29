"""The judge endpoint of the training tests (packaged as ``genevolve_graph.testing.scripted_judge``)."""

from genevolve_graph.testing.scripted_judge import JudgeScript, judge_server, sufficiency_for

__all__ = ["JudgeScript", "judge_server", "sufficiency_for"]
