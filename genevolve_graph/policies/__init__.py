"""Planner policies: any LangChain chat model, an OpenAI-compatible served model, or the
rule-based baseline. Names come from the ``POLICIES`` registry (``genevolve_graph.registry``),
which third-party packages extend through the ``genevolve_graph.policies`` entry-point group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genevolve_graph.policies.base import Policy, PolicyError
from genevolve_graph.registry import POLICIES, PluginLoadError, UnknownName

if TYPE_CHECKING:
    from genevolve_graph.context import AgentContext

POLICY_NAMES = POLICIES
"""A live view of the policy names (built-in and installed)."""


def make_policy(ctx: "AgentContext") -> Policy:
    """The policy ``ctx.policy`` names (raises ``PolicyError`` with the fix when misconfigured)."""
    try:
        return POLICIES.make(ctx)
    except (UnknownName, PluginLoadError) as exc:
        raise PolicyError(str(exc)) from exc


__all__ = ["Policy", "PolicyError", "make_policy", "POLICY_NAMES"]
