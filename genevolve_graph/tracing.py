"""Names and tags that make a trajectory easy to find in LangSmith (or any LangChain tracer).

- The policy turn is a run named ``policy`` (a chat-model run for model policies, a chain
  run for the rule-based planner).
- Each tool call is a LangChain tool run named after the tool.
- Every run the agent starts carries the tags ``genevolve``, ``policy:<name>`` and, when the
  context names one, ``experiment:<name>``; the same values go into the run metadata.
Nothing here sends anything anywhere: tracing happens only when the caller configured a
tracer (``LANGSMITH_TRACING=true`` or callbacks in the run config).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genevolve_graph.context import AgentContext

POLICY_RUN_NAME = "policy"
BASE_TAG = "genevolve"


def default_tags(policy: str, experiment: str = "") -> list[str]:
    """``["genevolve", "policy:<policy>", "experiment:<experiment>"]`` (the last one when set)."""
    tags = [BASE_TAG, f"policy:{policy}"]
    if experiment:
        tags.append(f"experiment:{experiment}")
    return tags


def policy_label(ctx: "AgentContext", policy: Any = None) -> str:
    """The policy's name for tags: an injected policy's own ``name``, else the context's."""
    return str(getattr(policy, "name", "") or ctx.policy)


def run_config(ctx: "AgentContext", *, run_name: str | None = None, policy: Any = None) -> dict[str, Any]:
    """A child run config with the default tags and metadata (merged into the parent's by LangChain)."""
    label = policy_label(ctx, policy)
    config: dict[str, Any] = {
        "tags": default_tags(label, ctx.experiment),
        "metadata": {"genevolve_policy": label, "genevolve_experiment": ctx.experiment},
    }
    if run_name:
        config["run_name"] = run_name
    return config


__all__ = ["BASE_TAG", "POLICY_RUN_NAME", "default_tags", "policy_label", "run_config"]
