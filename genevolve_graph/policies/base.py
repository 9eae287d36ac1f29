"""The policy interface: one planner turn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext


class PolicyError(RuntimeError):
    """The policy could not produce a reply (endpoint down after retries, bad configuration)."""


@runtime_checkable
class Policy(Protocol):
    """Given the trajectory so far (state messages), produce the next assistant message.

    ``genevolve`` policies return the raw reply text as ``content``; ``native`` policies may
    return ``tool_calls``. The planner parses either.
    """

    name: str
    model: str

    async def respond(self, messages: list[BaseMessage], ctx: "AgentContext") -> AIMessage: ...
