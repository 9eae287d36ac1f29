"""Human-readable views of a trajectory's messages."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from genevolve_graph.core.protocol import CONTROL_KEY


def message_label(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, ToolMessage):
        return f"tool · {message.name}"
    if isinstance(message, AIMessage):
        return "policy · " + (message.tool_calls[0]["name"] if message.tool_calls else "reply")
    if isinstance(message, HumanMessage):
        return "control · " + message.additional_kwargs[CONTROL_KEY] if message.additional_kwargs.get(CONTROL_KEY) else "request"
    return message.type


def print_trajectory(messages: list[BaseMessage], *, console: Console | None = None, max_chars: int = 1200) -> None:
    """One panel per message; the system prompt is shown by its length only."""
    console = console or Console()
    for message in messages:
        content = message.content if isinstance(message.content, str) else str(message.content)
        if isinstance(message, SystemMessage):
            content = f"({len(content)} characters; tools listed in <tools>)"
        elif len(content) > max_chars:
            content = content[:max_chars] + f" … ({len(content) - max_chars} more characters)"
        console.print(Panel(Text(content), title=message_label(message), title_align="left", expand=True))
