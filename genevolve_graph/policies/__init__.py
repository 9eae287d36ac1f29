"""Planner policies: an OpenAI-compatible served model, or the rule-based baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genevolve_graph.policies.base import Policy, PolicyError

if TYPE_CHECKING:
    from genevolve_graph.context import AgentContext

POLICY_NAMES = ("openai", "rules")


def make_policy(ctx: "AgentContext") -> Policy:
    """The policy ``ctx.policy`` names (raises ``PolicyError`` with the fix when misconfigured)."""
    if ctx.policy == "rules":
        from genevolve_graph.policies.rules import RulesPolicy

        return RulesPolicy.from_context(ctx)
    if ctx.policy == "openai":
        from genevolve_graph.policies.openai_chat import OpenAIChatPolicy

        return OpenAIChatPolicy.from_context(ctx)
    raise PolicyError(f"unknown policy {ctx.policy!r}; choose one of {', '.join(POLICY_NAMES)}")


__all__ = ["Policy", "PolicyError", "make_policy", "POLICY_NAMES"]
