"""Planner policies: any LangChain chat model, an OpenAI-compatible served model, or the
rule-based baseline. Names come from the ``POLICIES`` registry (``genevolve_graph.core.registry``),
which third-party packages extend through the ``genevolve_graph.policies`` entry-point group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genevolve_graph.policies.base import Policy, PolicyError
from genevolve_graph.core.registry import POLICIES, PluginLoadError, UnknownName

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

POLICY_NAMES = POLICIES
"""A live view of the policy names (built-in and installed)."""


def make_policy(ctx: "AgentContext") -> Policy:
    """The policy ``ctx.policy`` names (raises ``PolicyError`` with the fix when misconfigured).

    A registered factory may return a policy or any LangChain chat model; a chat model is
    wrapped in ``ChatModelPolicy`` with the context's protocol.
    """
    try:
        policy = POLICIES.make(ctx)
    except (UnknownName, PluginLoadError) as exc:
        raise PolicyError(str(exc)) from exc
    if not hasattr(policy, "respond"):
        from langchain_core.runnables import Runnable

        from genevolve_graph.policies.chat_model import ChatModelPolicy

        if not isinstance(policy, Runnable):
            raise PolicyError(f"policy {ctx.policy!r} built a {type(policy).__name__}, which is neither a policy nor a chat model")
        policy = ChatModelPolicy(policy, protocol=ctx.protocol, name=ctx.policy)
    return policy


__all__ = ["Policy", "PolicyError", "make_policy", "POLICY_NAMES"]
