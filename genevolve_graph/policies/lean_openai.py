"""A lean ``ChatOpenAI``: the same LangChain chat model, sending the same bytes, without
the openai SDK's per-request machinery.

Why: at the sizes the batch runs, one ``ChatOpenAI`` call costs about 5 ms of client CPU
(SDK request transform and option models, its retry wrapper, response models, and the
result built in a worker thread), against under 2 ms for the HTTP exchange itself. Every
rollout pays it on every round.

What stays: it *is* a ``ChatOpenAI`` (same fields, ``bind_tools``, LangSmith parameters,
callbacks), so it is traced and streams like one (``_agenerate`` and ``_astream`` are
implemented). The request body is built by ``ChatOpenAI._get_request_payload`` and laid out
in the key order the SDK uses, then serialised as the SDK serialises it, so the bytes on the
wire are identical (``tests/policies/test_lean_chat.py::test_request_bytes_identical_for_both_chat_models``);
the headers are the SDK client's own. They travel through the caller's httpx client or, for
the policy's own client, an aiohttp session (``lean_transport.py``). The reply dict goes through
``ChatOpenAI._create_chat_result`` (in-line: it is cheap for one reply) and the stream
chunks through ``_convert_chunk_to_generation_chunk``, so content, tool calls and usage are
identical too; ``response_metadata`` holds what the server sent, without the ``None``
fields the SDK's response model adds for what it left out.
HTTP failures are raised as the SDK's exceptions, so retries and error messages do not
change. Anything outside the plain chat-completions path (structured output, the
Responses API, response headers, gateways) goes to ``ChatOpenAI`` unchanged.
"""

from __future__ import annotations

import inspect
import json
import weakref
from typing import Any, AsyncIterator, Literal

import httpx
import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.globals import get_llm_cache
from langchain_core.language_models.chat_models import _gen_info_and_msg_metadata
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableBinding
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import _convert_from_v1_to_chat_completions, _convert_message_to_dict
from openai.resources.chat.completions import AsyncCompletions
from pydantic import Field, PrivateAttr

from genevolve_graph.net.limits import OutboundLimits
from genevolve_graph.net.reply_check import endpoint_completion
from genevolve_graph.core.tracing import nobody_listens


def _sdk_body_order() -> dict[str, int]:
    """The order in which ``chat.completions.create`` lays out its body: ``model``,
    ``stream``, ``service_tier``, ``messages``, then its keyword parameters in signature
    order. Read from the SDK itself so that a new parameter lands where the SDK puts it."""
    head = ["model", "stream", "service_tier", "messages"]
    rest = [p for p in inspect.signature(AsyncCompletions.create).parameters
            if p not in head and p != "self" and not p.startswith("extra_") and p != "timeout"]
    return {name: i for i, name in enumerate(head + rest)}


_BODY_ORDER = _sdk_body_order()


def _dumps(value: Any) -> str:
    """The SDK's JSON settings (``openai._utils._json.openapi_dumps``)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class EncodedMessages(list):
    """The ``messages`` of a payload, with each message's JSON text beside it (``json``),
    so that a request body re-encodes only what is new. A plain list to everyone else."""

    json: list[str]


def request_body(payload: dict[str, Any]) -> bytes:
    """The bytes the SDK sends for ``create(**payload)``: its key order, ``extra_body``
    merged on top, and its JSON settings. Messages that arrive encoded
    (:class:`EncodedMessages`) are spliced in as they are: the JSON of a list is its
    items' JSON joined by commas, so the bytes are the same as encoding the whole body."""
    extra = payload.get("extra_body") or {}
    known = sorted((k for k in payload if k != "extra_body"), key=lambda k: _BODY_ORDER.get(k, len(_BODY_ORDER)))
    body = {k: payload[k] for k in known}
    body.update(extra)
    messages = body.get("messages")
    if not isinstance(messages, EncodedMessages) or not messages:
        return _dumps(body).encode()
    body["messages"] = []
    text = _dumps(body)
    # The first '"messages":[]' is the top-level key: the keys before it (model, stream,
    # service_tier) hold scalars, and a quote inside a string is escaped.
    at = text.index('"messages":[]') + len('"messages":[')
    return (text[:at] + ",".join(messages.json) + text[at:]).encode()


class _MessageDicts:
    """Each message object converted to its request dict and JSON text once: a
    conversation is resent every round, and a caller that passes the same message objects
    again (the policy does) gets its earlier messages for free. Keyed by object identity,
    held weakly."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[weakref.ref, dict[str, Any], str]] = {}

    def entry(self, message: BaseMessage) -> tuple[weakref.ref, dict[str, Any], str]:
        key = id(message)
        hit = self._memo.get(key)
        if hit is not None and hit[0]() is message:
            return hit
        converted = (_convert_message_to_dict(_convert_from_v1_to_chat_completions(message))
                     if isinstance(message, AIMessage) else _convert_message_to_dict(message))
        memo = self._memo
        hit = memo[key] = (weakref.ref(message, lambda _ref, key=key: memo.pop(key, None)), converted, _dumps(converted))
        return hit

    def encoded(self, messages: list[BaseMessage]) -> EncodedMessages:
        entries = [self.entry(m) for m in messages]
        encoded = EncodedMessages(e[1] for e in entries)
        encoded.json = [e[2] for e in entries]
        return encoded


class LeanChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` whose chat-completions calls skip the openai SDK and go straight to
    httpx or aiohttp (``lean_transport``; see the module docstring). Construct it like
    ``ChatOpenAI``; it needs ``http_async_client``."""

    lean_transport: Literal["httpx", "aiohttp"] = Field(default="httpx")
    """How the plain path sends: through ``http_async_client`` (``httpx``: the caller's
    client with its transport, proxies and hooks), or through an aiohttp session per event
    loop (``aiohttp``: the same request bytes and headers for about half the CPU; see
    ``lean_transport.py``). Streams and every other path use ``http_async_client``."""
    reply_limits: Any = Field(default=None, exclude=True)
    """The outbound policy (``net.limits.OutboundLimits``) of the aiohttp path; None: the
    defaults with the client's read timeout as the total deadline. The httpx path is
    limited by the caller's client (``net.limits.limited_client``)."""
    endpoint_role: str = Field(default="policy")
    """Who the endpoint is, in the message of a malformed reply (``policy``, ``judge``)."""

    _lean_dicts: _MessageDicts = PrivateAttr(default_factory=_MessageDicts)
    _lean_headers: dict[str, str] | None = PrivateAttr(default=None)
    _lean_wire_headers: dict[str, str] | None = PrivateAttr(default=None)
    _lean_aiohttp: Any = PrivateAttr(default=None)

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        """ChatOpenAI's payload, with each message's dict converted once per message object."""
        payload = super()._get_request_payload([], stop=stop, **kwargs)
        if payload.get("messages") != []:  # not the chat-completions layout: ChatOpenAI's own
            return super()._get_request_payload(input_, stop=stop, **kwargs)
        payload["messages"] = self._lean_dicts.encoded(self._convert_input(input_).to_messages())
        return payload

    def _lean(self, payload: dict[str, Any]) -> bool:
        """Whether the plain path applies (everything else is ChatOpenAI's own path)."""
        return (
            self.http_async_client is not None
            and "response_format" not in payload
            and not self._use_responses_api(payload)
            and not self.include_response_headers
            and not self._uses_gateway
        )

    def _headers(self) -> dict[str, str]:
        """The headers the SDK client sends with a chat-completions call (no SDK retry:
        retries belong to the caller, as with ``max_retries=0``)."""
        cached = self._lean_headers
        if cached is None:
            client = self.root_async_client
            key = self.openai_api_key.get_secret_value() if self.openai_api_key is not None else ""
            cached = {"Authorization": f"Bearer {key}", **{k: v for k, v in client.default_headers.items() if isinstance(v, str)}}
            cached["X-Stainless-Raw-Response"] = "true"
            cached["x-stainless-retry-count"] = "0"
            timeout = client.timeout
            read = timeout.read if hasattr(timeout, "read") else timeout
            if read is not None:
                cached["x-stainless-read-timeout"] = str(read)
            self._lean_headers = cached
        return cached

    def _url(self) -> str:
        return str(self.root_async_client.base_url).rstrip("/") + "/chat/completions"

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise self.root_async_client._make_status_error_from_response(response)  # the SDK's exception classes

    async def _post(self, body: bytes) -> httpx.Response:
        try:
            return await self.http_async_client.post(self._url(), content=body, headers=self._headers())
        except httpx.TimeoutException as exc:
            raise openai.APITimeoutError(request=exc.request) from exc
        except httpx.TransportError as exc:
            raise openai.APIConnectionError(request=exc.request) from exc

    def _use_aiohttp(self) -> bool:
        """``lean_transport="aiohttp"``, unless the endpoint URL carries credentials: httpx
        turns those into Basic authentication, and that request is left to httpx."""
        if self.lean_transport != "aiohttp":
            return False
        url = self.root_async_client.base_url
        return not (url.username or url.password)

    def _reply_limits(self) -> OutboundLimits:
        if self.reply_limits is not None:
            return self.reply_limits
        timeout = self.root_async_client.timeout
        read = timeout.read if isinstance(timeout, httpx.Timeout) else timeout
        return OutboundLimits.resolve(total_deadline_s=read if isinstance(read, (int, float)) and read > 0 else None)

    async def _exchange(self, body: bytes) -> dict[str, Any]:
        """The aiohttp exchange: POST, the SDK's error for an HTTP error, and the reply
        decoded once and checked as a chat completion (what ``completion_hook`` checks on
        the httpx path)."""
        from genevolve_graph.policies.lean_transport import AiohttpTransport, httpx_request_headers

        url = self._url()
        transport = self._lean_aiohttp
        if transport is None:
            transport = self._lean_aiohttp = AiohttpTransport(timeout=self.root_async_client.timeout, limits=self._reply_limits())
        headers = self._lean_wire_headers
        if headers is None:
            headers = self._lean_wire_headers = httpx_request_headers(self.http_async_client, url, self._headers())
        try:
            reply = await transport.post(url, body, headers)
        except httpx.TimeoutException as exc:
            raise openai.APITimeoutError(request=exc.request) from exc
        except httpx.RequestError as exc:  # no connection, or a reply that does not decode
            raise openai.APIConnectionError(request=exc.request) from exc
        if reply.status >= 400:
            raise self.root_async_client._make_status_error_from_response(reply.as_httpx(url))
        return endpoint_completion(reply.body, reply.content_type, reply.charset, role=self.endpoint_role, url=url)

    async def aclose(self) -> None:
        """Close the aiohttp session of the running event loop (sessions also close with their loop)."""
        if self._lean_aiohttp is not None:
            await self._lean_aiohttp.aclose()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if not self._lean(payload):
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        if self._use_aiohttp():
            return self._create_chat_result(await self._exchange(request_body(payload)), {})
        response = await self._post(request_body(payload))
        self._raise_for(response)
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise ValueError(f"the endpoint's reply is not JSON: {response.text[:200]!r}") from exc
        return self._create_chat_result(data, {})

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        *,
        stream_usage: bool | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = dict(kwargs, stream=True)
        usage = self._should_stream_usage(stream_usage, **call)
        if usage:
            call["stream_options"] = {"include_usage": usage}
        payload = self._get_request_payload(messages, stop=stop, **call)
        if not self._lean(payload) or self.stream_chunk_timeout:
            async for chunk in super()._astream(messages, stop=stop, run_manager=run_manager, stream_usage=stream_usage, **kwargs):
                yield chunk
            return
        client = self.http_async_client
        request = client.build_request("POST", self._url(), content=request_body(payload), headers=self._headers())
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise openai.APITimeoutError(request=exc.request) from exc
        except httpx.TransportError as exc:
            raise openai.APIConnectionError(request=exc.request) from exc
        try:
            if response.status_code >= 400:
                await response.aread()
                self._raise_for(response)
            chunk_class: type = AIMessageChunk
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if event.get("error"):
                    raise openai.APIError(str(event["error"]), request, body=event)
                generation = self._convert_chunk_to_generation_chunk(event, chunk_class, {})
                if generation is None:
                    continue
                chunk_class = generation.message.__class__
                logprobs = (generation.generation_info or {}).get("logprobs")
                if run_manager:
                    await run_manager.on_llm_new_token(generation.text, chunk=generation, logprobs=logprobs)
                yield generation
        finally:
            await response.aclose()


def _quiet(model: ChatOpenAI, config: Any = None) -> bool:
    """Whether nothing would observe a call of ``model`` made now: nobody listens
    (``tracing.nobody_listens``), and the model has no callbacks, verbose mode, LLM cache,
    rate limiter or streaming."""
    if model.callbacks or model.verbose or model.rate_limiter or model.streaming:
        return False
    if model.output_version not in (None, "v0") or model.disable_streaming not in (False,):
        return False
    if model.cache not in (None, False) or (model.cache is None and get_llm_cache() is not None):
        return False
    return nobody_listens(config)


async def ainvoke_chat(runnable: Any, messages: list[BaseMessage], config: Any = None) -> BaseMessage:
    """``runnable.ainvoke(messages)``, minus LangChain's run bookkeeping when no one listens.

    With a tracer, a callback handler, a cache or streaming configured this *is*
    ``runnable.ainvoke``: the call is traced and streamed as usual. Otherwise a
    ``LeanChatOpenAI`` (bare or bound with ``bind_tools``) is called through ``_agenerate``
    and its reply finished exactly as ``BaseChatModel`` finishes it (generation info and
    the response's ``llm_output`` merged into ``response_metadata``); setting up callback
    managers for nobody costs more than the HTTP exchange at batch sizes. ``config`` is
    passed to ``ainvoke`` (run name, tags); its callbacks count as listeners.
    """
    model, kwargs = (runnable.bound, dict(runnable.kwargs)) if isinstance(runnable, RunnableBinding) else (runnable, {})
    if not isinstance(model, LeanChatOpenAI) or not _quiet(model, config):
        return await runnable.ainvoke(messages, config=config)
    result = await model._agenerate(messages, **kwargs)
    generation = result.generations[0]
    message = generation.message
    message.response_metadata = _gen_info_and_msg_metadata(generation)
    if len(result.generations) == 1 and result.llm_output is not None:
        message.response_metadata = {**result.llm_output, **message.response_metadata}
    return message
