"""A policy served behind an OpenAI-compatible endpoint (vLLM, SGLang, OpenAI, gateways).

Calls go through langchain-openai's ``ChatOpenAI``. ``genevolve`` mode sends the text
protocol with no ``tools`` parameter, so the released checkpoint works unchanged;
``native`` mode binds the tool schemas for tool-calling models. Transient failures
(connection errors, timeouts, 429, 5xx) are retried with exponential backoff and jitter
(tenacity); what still fails becomes a ``PolicyError`` that ends the trajectory with
termination ``error``, the partial trajectory staying in the checkpointer.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

import httpx
import openai
from langchain_core.messages import AIMessage, BaseMessage
from langchain_openai import ChatOpenAI
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from genevolve_graph.policies.base import PolicyError
from genevolve_graph.policies.lean_openai import LeanChatOpenAI, ainvoke_chat
from genevolve_graph.net.limits import DeadlineExceeded, OutboundLimits, limit_exceeded, limited_client
from genevolve_graph.net.reply_check import completion_hook, malformed_reply, redact_endpoint
from genevolve_graph.core.protocol import RenderedMessages, native_tool_schemas
from genevolve_graph.safety.redaction import redact_text
from genevolve_graph.core.tracing import POLICY_RUN_NAME, run_config

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
CHAT_CLIENTS = ("lean", "sdk")
"""``lean``: ``LeanChatOpenAI`` (the default: the same requests for a fraction of the CPU);
``sdk``: ``ChatOpenAI`` through the openai SDK. Chosen with ``--option chat_client=sdk``."""


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the same request may succeed a moment later. A 2xx reply that is not
    a chat completion is a misconfigured endpoint, not a passing fault."""
    if malformed_reply(exc) is not None:
        return False
    exceeded = limit_exceeded(exc)
    if exceeded is not None:  # a deadline is a timeout; an oversized reply would come back the same
        return isinstance(exceeded, DeadlineExceeded)
    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS
    return False


def describe_failure(exc: BaseException, endpoint: str = "") -> str:
    """A one-line cause without secrets (the SDK never puts the key in its messages; URLs in
    them lose their credentials)."""
    malformed = malformed_reply(exc)
    if malformed is not None:
        return redact_text(str(malformed))
    where = f" {endpoint}" if endpoint else ""
    exceeded = limit_exceeded(exc)
    if isinstance(exceeded, DeadlineExceeded):
        return redact_text(f"the policy endpoint{where} timed out: no complete reply within the total deadline of {exceeded.limit:g} s")
    if exceeded is not None:
        return redact_text(f"the policy endpoint{where} sent too much: {exceeded}")
    if isinstance(exc, openai.APIStatusError):
        return redact_text(f"HTTP {exc.status_code} from the policy endpoint{where}: {str(exc.message)[:300]}")
    if isinstance(exc, openai.APITimeoutError):
        return f"the policy endpoint{where} timed out"
    if isinstance(exc, openai.APIConnectionError):
        return redact_text(f"cannot reach the policy endpoint{where} ({exc.__cause__ or exc})")
    if isinstance(exc, openai.OpenAIError):
        return redact_text(f"{type(exc).__name__}: {exc}")
    # Anything else was raised while the SDK or langchain-openai read the reply.
    return redact_text(f"the policy endpoint{where} sent a reply that is not a usable chat completion ({type(exc).__name__}: {str(exc)[:300]})")


class ProtocolChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` that hands the chat messages to the SDK pre-serialised.

    The request body is the same JSON (the same ``messages`` array of role/content
    objects); only the ``openai`` SDK's per-call type-directed transform of the messages is
    skipped, which walks every message of the conversation on every round (about 5 ms per
    request at 8 rounds, growing with the trajectory). The messages are plain JSON already:
    langchain-openai serialised them.
    """

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "messages" in payload:
            extra = dict(payload.get("extra_body") or {})
            extra["messages"] = payload["messages"]
            payload["extra_body"] = extra
            payload["messages"] = []
        return payload


class OpenAIChatPolicy:
    """One planner turn = one chat completion."""

    name = "openai"
    traced = True  # the ChatOpenAI call is the run named "policy"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        protocol: str = "genevolve",
        temperature: float = 0.6,
        top_p: float = 0.9,
        max_tokens: int = 4096,
        timeout: float = 120.0,
        max_retries: int = 3,
        retry_initial_delay: float = 1.0,
        http_async_client: Any = None,
        chat_client: str = "lean",
        max_reply_bytes: int | None = None,
    ) -> None:
        if not base_url:
            raise PolicyError("policy 'openai' needs an endpoint: pass --base-url or set GENEVOLVE_BASE_URL / OPENAI_BASE_URL")
        if not model:
            raise PolicyError("policy 'openai' needs a model name: pass --model or set GENEVOLVE_MODEL")
        if protocol not in ("genevolve", "native"):
            raise PolicyError(f"unknown protocol {protocol!r}; choose 'genevolve' or 'native'")
        if chat_client not in CHAT_CLIENTS:
            raise PolicyError(f"unknown chat_client option {chat_client!r}; choose one of {', '.join(CHAT_CLIENTS)} (--option chat_client=...)")
        self.model = model
        self.protocol = protocol
        self.endpoint = redact_endpoint(base_url)
        self.max_retries = max_retries
        self.retry_initial_delay = retry_initial_delay
        own_client = http_async_client is None
        reply_limits = OutboundLimits.resolve(total_deadline_s=timeout, max_reply_bytes=max_reply_bytes)
        if own_client:
            # Our own pool (not langchain-openai's process-wide cached one): a pool belongs
            # to the event loop that first used it, and policies are cached per loop.
            # ``timeout`` is the total deadline of one request (net.limits), not of each read.
            http_async_client = limited_client(
                reply_limits, limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
                event_hooks={"response": [completion_hook("policy")]},
            )
        kwargs: dict[str, Any] = {"http_async_client": http_async_client}
        chat_class = LeanChatOpenAI if chat_client == "lean" else ProtocolChatOpenAI
        if chat_client == "lean" and own_client:
            kwargs["lean_transport"] = "aiohttp"  # a caller's own httpx client is used as given
            kwargs["reply_limits"] = reply_limits
        self.chat = chat_class(
            model=model,
            base_url=base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            timeout=timeout,
            max_retries=0,  # retries are ours, with backoff and jitter
            **kwargs,
        )
        self._runnable = self.chat.bind_tools(native_tool_schemas()) if protocol == "native" else self.chat
        self._rendered = RenderedMessages(protocol)

    @classmethod
    def from_context(cls, ctx: "AgentContext") -> Any:
        """The policy of ``ctx``; a ``provider:model`` string in ``ctx.model`` ("openai:gpt-4o-mini")
        is built by ``load_chat_model`` (LangChain's ``init_chat_model``) instead, with
        ``ctx.base_url`` (when set) as its endpoint."""
        from genevolve_graph.core.model_string import split_model_string

        if split_model_string(ctx.model):
            from genevolve_graph.policies.chat_model import ChatModelPolicy, load_chat_model

            try:
                chat = load_chat_model(ctx.model, base_url=ctx.base_url or None, temperature=ctx.temperature,
                                       timeout=ctx.request_timeout, max_retries=ctx.max_retries)
            except (ValueError, ImportError) as exc:
                raise PolicyError(str(exc)) from exc
            return ChatModelPolicy(chat, protocol=ctx.protocol, name="openai")
        return cls(
            base_url=ctx.base_url,
            model=ctx.model,
            protocol=ctx.protocol,
            temperature=ctx.temperature,
            top_p=ctx.top_p,
            max_tokens=ctx.max_tokens,
            timeout=ctx.request_timeout,
            max_retries=ctx.max_retries,
            retry_initial_delay=ctx.retry_initial_delay,
            chat_client=str(ctx.options.get("chat_client", "lean")),
        )

    async def _retry(self, request: list[BaseMessage], config: dict[str, Any]) -> BaseMessage:
        """Attempts two onwards, after the first failed transiently: up to ``max_retries``
        more, with exponential backoff and full jitter (tenacity's, counted from the first
        attempt). The first attempt runs outside tenacity: setting up its retry machinery
        on every round cost more than the round's own bookkeeping."""
        wait = wait_random_exponential(multiplier=self.retry_initial_delay, max=60.0)
        await asyncio.sleep(wait(_Attempt(1)))
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.max_retries),
            wait=lambda state: wait(_Attempt(state.attempt_number + 1)),
            reraise=True,
        ):
            with attempt:
                reply = await ainvoke_chat(self._runnable, request, config=config)
        return reply

    async def respond(self, messages: list[BaseMessage], ctx: "AgentContext") -> AIMessage:
        request = self._rendered.render(messages)
        config = run_config(ctx, run_name=POLICY_RUN_NAME, policy=self)
        try:
            try:
                reply = await ainvoke_chat(self._runnable, request, config=config)
            except Exception as exc:  # noqa: BLE001 - retried below when transient
                if not (self.max_retries and is_transient(exc)):
                    raise
                reply = await self._retry(request, config)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a termination cause
            raise PolicyError(describe_failure(exc, self.endpoint)) from exc
        content = reply.content if isinstance(reply.content, str) else _text_of(reply.content)
        return AIMessage(
            content=content,
            tool_calls=list(reply.tool_calls),
            response_metadata=dict(reply.response_metadata),
            usage_metadata=reply.usage_metadata,
        )


class _Attempt:
    """What ``wait_random_exponential`` reads of a retry state: the attempt number."""

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


def _text_of(parts: list[Any]) -> str:
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in parts)
