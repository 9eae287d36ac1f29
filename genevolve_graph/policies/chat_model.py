"""Any LangChain chat model as the planner policy.

``genevolve`` protocol: the model gets the conversation in the released checkpoint's text
protocol (tools described in the system prompt, results as ``<tool_response>`` user turns)
and its text reply is parsed for ``<tool_call>``/``<answer>``. ``native`` protocol: the
model gets ``bind_tools`` with the three tool schemas and its ``tool_calls`` are read.

The call is a LangChain run named ``policy`` with the default tags, so it shows up in
LangSmith like any chat model call. Any exception of the model ends the trajectory with
termination ``error`` (the partial trajectory stays in the checkpointer); retries are the
model's business (``max_retries`` of the provider class, or ``.with_retry()`` on a
genevolve-mode model).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable

from genevolve_graph.policies.base import PolicyError
from genevolve_graph.core.protocol import native_tool_schemas, policy_messages
from genevolve_graph.core.tracing import POLICY_RUN_NAME, run_config
from genevolve_graph.util.event_loop import in_sync_run

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext


def model_name(model: Any) -> str:
    """A readable model id: the provider's model name when it has one, else the class name."""
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


class ChatModelPolicy:
    """One planner turn = one call of a LangChain chat model (or any message-in, message-out runnable)."""

    traced = True
    """The call already is a run named ``policy``; the planner adds no wrapper run."""

    def __init__(self, model: Runnable, *, protocol: str = "genevolve", name: str | None = None) -> None:
        if protocol not in ("genevolve", "native"):
            raise PolicyError(f"unknown protocol {protocol!r}; choose 'genevolve' or 'native'")
        if not isinstance(model, Runnable):
            raise TypeError(f"model must be a LangChain chat model (a Runnable), not {type(model).__name__}")
        self.chat = model
        self.protocol = protocol
        self.model = model_name(model)
        self.name = name or self.model
        if protocol == "native":
            bind = getattr(model, "bind_tools", None)
            if bind is None:
                raise TypeError(f"protocol 'native' needs a chat model with bind_tools; {type(model).__name__} has none")
            try:
                self._runnable = bind(native_tool_schemas())
            except NotImplementedError:
                raise TypeError(
                    f"protocol 'native' needs a chat model that implements bind_tools; {type(model).__name__} does not "
                    "(use protocol='genevolve', or a tool-calling model)"
                ) from None
        else:
            self._runnable = model

    async def respond(self, messages: list[BaseMessage], ctx: "AgentContext") -> AIMessage:
        request = policy_messages(messages, self.protocol)
        config = run_config(ctx, run_name=POLICY_RUN_NAME, policy=self)
        try:
            if in_sync_run():
                # A sync run (invoke, stream, batch): the model's sync API, off the loop.
                # Its async client belongs to the caller's loop and must not be dragged
                # onto ours (issue 24: "Event loop is closed" / "bound to a different loop").
                reply = await asyncio.to_thread(self._runnable.invoke, request, config=config)
            else:
                reply = await self._runnable.ainvoke(request, config=config)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a termination cause
            raise PolicyError(f"policy model {self.model!r} failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
        if not isinstance(reply, BaseMessage):
            raise PolicyError(f"policy model {self.model!r} returned {type(reply).__name__}, not a chat message")
        content = reply.content if isinstance(reply.content, str) else _text_of(reply.content)
        return AIMessage(
            content=content,
            tool_calls=list(getattr(reply, "tool_calls", []) or []),
            response_metadata=dict(reply.response_metadata),
            usage_metadata=getattr(reply, "usage_metadata", None),
        )


def load_chat_model(spec: str, **kwargs: Any) -> Runnable:
    """A chat model from an ``init_chat_model`` string ("openai:gpt-4o-mini").

    LangChain's ``init_chat_model`` builds it when ``langchain`` is installed (every
    provider it knows); without it, ``openai:`` models are built with langchain-openai,
    which this package depends on. ``kwargs`` (``base_url``, ``temperature``, ...) go to
    the model's constructor; ``None`` values are left out."""
    from genevolve_graph.core.model_string import split_model_string

    parsed = split_model_string(spec)
    if parsed is None:
        raise ValueError(f"model {spec!r} is not a 'provider:model' string (for example 'openai:gpt-4o-mini')")
    provider, name = parsed
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        if provider != "openai":
            raise ValueError(f"model {spec!r} needs LangChain's init_chat_model: pip install langchain langchain-{provider.replace('_', '-')}") from None
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=name, **kwargs)
    return init_chat_model(name, model_provider=provider, **kwargs)


def _text_of(parts: list[Any]) -> str:
    return "".join(p.get("text", "") if isinstance(p, dict) and p.get("type", "text") == "text" else str(p) if isinstance(p, str) else "" for p in parts)


__all__ = ["ChatModelPolicy", "load_chat_model", "model_name"]
