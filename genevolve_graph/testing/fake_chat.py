"""A scripted chat model that implements ``bind_tools``, for native-protocol tests.

LangChain's fake chat models (``FakeListChatModel``, ``GenericFakeChatModel``) raise
``NotImplementedError`` from ``bind_tools``; LangGraph's and LangChain's own test suites
therefore keep a small tool-calling fake, and so does this package. It replies with the
scripted messages in turn and records what it was asked (messages and bound tools), so a
test can check the exact request.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field


class ToolCallingFakeChatModel(BaseChatModel):
    """Replies with ``responses`` in order (an ``AIMessage`` or a plain string each)."""

    responses: list[Any]
    index: int = 0
    requests: list[dict[str, Any]] = Field(default_factory=list)
    """Per call: ``{"messages": [...], "tools": [...]}``."""

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.index >= len(self.responses):
            raise RuntimeError(f"the fake model's script has only {len(self.responses)} replies")
        self.requests.append({"messages": list(messages), "tools": kwargs.get("tools", [])})
        reply = self.responses[self.index]
        self.index += 1
        message = reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply))
        return ChatResult(generations=[ChatGeneration(message=message)])


__all__ = ["ToolCallingFakeChatModel"]
