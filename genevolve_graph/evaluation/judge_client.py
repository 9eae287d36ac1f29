"""An async client for a multimodal judge behind an OpenAI-compatible chat endpoint.

Every judge in this package (KScore, WISE, program sufficiency) and the trainer's reward
go through :class:`JudgeClient`, so they share the same behaviour:

- temperature 0, so that a sample scores the same on a second run where the model allows;
- retries with exponential backoff and jitter on 429, 408/409, 5xx, timeouts, dropped
  connections and empty replies, honouring ``Retry-After``; other 4xx fail at once;
- one requests-per-minute limiter shared by every worker of a client (and by every retry),
  because gateway quotas count requests, not workers.

Requests go through a LangChain chat model (``ChatOpenAI`` on the endpoint, or any
``BaseChatModel`` passed as ``chat_model``), so each judge call is a traced LangChain run
named ``judge`` (tags ``genevolve``, ``judge``) in LangSmith or any callback handler.
The ``openai`` SDK's own retries are switched off so that the limiter sees every request.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import httpx
import openai
from langchain_core.language_models import BaseChatModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from genevolve_graph.net.limits import DeadlineExceeded, OutboundLimits, ReplyTooLarge, limit_exceeded, limited_client
from genevolve_graph.net.reply_check import MalformedReply, completion_hook, malformed_reply

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429})
"""HTTP statuses worth another try besides every 5xx."""


_REPLY_MODEL: ContextVar[str | None] = ContextVar("genevolve_judge_reply_model", default=None)


def reply_model() -> str | None:
    """The model named in the last judge reply received by the current task (an endpoint
    or gateway may answer with another model than the one configured), or None.
    Recorded beside the configured model so that a report shows which model scored."""
    return _REPLY_MODEL.get()


def reply_models(records: list[dict[str, Any]]) -> list[str]:
    """The distinct models named in the judge replies of ``records`` (``judge_reply_model``)."""
    return sorted({str(r["judge_reply_model"]) for r in records if r.get("judge_reply_model")})


class JudgeError(RuntimeError):
    """The judge gave no usable answer: the endpoint kept failing, refused the request, or its
    output could not be read after the allowed retries. The trainer maps this to a missing reward.

    ``status`` is the HTTP status of the last failure when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def is_configuration_error(self) -> bool:
        """The endpoint rejected the key, the permission or the model: every request will fail."""
        return self.status in (401, 403, 404)


class _EmptyReply(Exception):
    """The endpoint answered 200 with no text (safety block, truncated thinking): worth a retry."""


class RateLimiter:
    """Spaces requests at least ``60 / rpm`` seconds apart, across tasks, threads and event loops.

    A slot is reserved under a thread lock (no awaiting while holding it), then the caller
    sleeps until its slot; so concurrent workers queue up in arrival order and the endpoint
    never sees two requests closer than the interval.
    """

    def __init__(self, rpm: float) -> None:
        if rpm <= 0:
            raise ValueError(f"rpm must be positive, got {rpm}")
        self.rpm = float(rpm)
        self.interval = 60.0 / self.rpm
        self._lock = threading.Lock()
        self._next = 0.0

    def reserve(self) -> float:
        """Claim the next free slot; returns how many seconds to wait for it."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
            return slot - now

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) if isinstance(exc, openai.APIStatusError) else None


def _is_retryable(exc: BaseException) -> bool:
    exceeded = limit_exceeded(exc)
    if exceeded is not None:  # a deadline is a timeout; an oversized reply would come back the same
        return isinstance(exceeded, DeadlineExceeded)
    if isinstance(exc, _EmptyReply | openai.APIConnectionError):  # APITimeoutError is one of these
        return True
    status = _status(exc)
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` in seconds), if it said."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    exceeded = limit_exceeded(exc)
    if exceeded is not None:
        return str(exceeded)
    status = _status(exc)
    if status is not None:
        body = getattr(exc, "body", None) or getattr(exc, "message", "")
        return f"HTTP {status}: {str(body)[:300]}"
    if isinstance(exc, _EmptyReply):
        return "the endpoint returned an empty reply"
    if isinstance(exc, openai.APITimeoutError):  # langchain-openai raises its own subclass
        return f"APITimeoutError: {str(exc)[:300]}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def message_text(content: Any) -> str:
    """The text of a chat completion message's content (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict):
            parts.append(str(part.get("text", "")))
        else:
            parts.append(str(getattr(part, "text", "") or ""))
    return "".join(parts)


class JudgeClient:
    """A judge model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``rpm`` caps requests per minute for everything sent through this client; ``max_retries``
    counts the tries after the first. ``api_key`` falls back to ``OPENAI_API_KEY`` and then to
    ``"EMPTY"`` (what local vLLM servers accept). The client is safe to use from several
    event loops in turn (the trainer may call ``asyncio.run`` per step): one SDK client is kept
    per loop.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        rpm: float | None = None,
        max_retries: int = 5,
        timeout: float = 120.0,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        extra_body: dict[str, Any] | None = None,
        chat_model: BaseChatModel | None = None,
        max_reply_bytes: int | None = None,
    ) -> None:
        if not model:
            raise ValueError("a judge model name is required")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.base_url = base_url
        self.model = model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.limiter = RateLimiter(rpm) if rpm else None
        self.max_retries = max_retries
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        """The outbound reply cap (None: ``GENEVOLVE_MAX_REPLY_BYTES`` or the default)."""
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = dict(extra_body or {})
        self.chat_model = chat_model
        """Any LangChain chat model to judge with instead of ``ChatOpenAI`` on ``base_url``."""
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[BaseChatModel, httpx.AsyncClient]] = (
            weakref.WeakKeyDictionary()
        )
        self._clients_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JudgeClient(base_url={self.base_url!r}, model={self.model!r}, rpm={self.limiter.rpm if self.limiter else None})"

    def _chat(self) -> BaseChatModel:
        """The chat model of the running event loop (an HTTP pool belongs to the loop that made it)."""
        if self.chat_model is not None:
            return self.chat_model
        from langchain_openai import ChatOpenAI

        loop = asyncio.get_running_loop()
        with self._clients_lock:
            entry = self._clients.get(loop)
            if entry is None:
                # The reply check turns garbage bodies into one MalformedReply naming the endpoint.
                # The outbound policy: ``timeout`` is the total deadline of a request, and
                # the decoded reply is capped while it streams (net.limits).
                http = limited_client(OutboundLimits.resolve(total_deadline_s=self.timeout, max_reply_bytes=self.max_reply_bytes),
                                      event_hooks={"response": [completion_hook("judge")]})
                extra = dict(self.extra_body)
                if self.max_tokens is not None:
                    # As ``max_tokens`` in the body (ChatOpenAI would rename it to
                    # max_completion_tokens, which older OpenAI-compatible servers ignore).
                    extra["max_tokens"] = self.max_tokens
                kwargs: dict[str, Any] = {"extra_body": extra} if extra else {}
                chat = ChatOpenAI(
                    model=self.model, base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                    max_retries=0, temperature=self.temperature, http_async_client=http, **kwargs,
                )
                entry = self._clients[loop] = (chat, http)
            return entry[0]

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_max)(state)
        asked = _retry_after(state.outcome.exception() if state.outcome else None)
        return min(self.backoff_max, max(backoff, asked or 0.0))

    async def _once(self, messages: list[dict]) -> str:
        if self.limiter is not None:
            await self.limiter.acquire()
        try:
            reply = await self._chat().ainvoke(messages, config={"run_name": "judge", "tags": ["genevolve", "judge"]})
        except Exception as exc:
            malformed = malformed_reply(exc)
            if malformed is not None:
                raise malformed from None
            exceeded = limit_exceeded(exc)
            if exceeded is not None:
                raise exceeded from None
            raise
        named = (getattr(reply, "response_metadata", None) or {}).get("model_name")
        _REPLY_MODEL.set(str(named)[:200] if named else None)
        text = message_text(reply.content)
        if not text.strip():
            raise _EmptyReply()
        return text

    async def complete(self, messages: list[dict]) -> str:
        """The judge's reply text to ``messages`` (OpenAI chat dicts; images as data-URL parts).

        Raises :class:`JudgeError` when the endpoint refuses the request (4xx other than
        408/409/429) or keeps failing through every retry.
        """
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(messages)
        except MalformedReply as exc:
            raise JudgeError(f"judge {self.model!r}: {exc}") from exc
        except ReplyTooLarge as exc:
            raise JudgeError(f"judge {self.model!r}: {exc}") from exc
        except (openai.OpenAIError, _EmptyReply, DeadlineExceeded) as exc:
            if _is_retryable(exc):
                raise JudgeError(
                    f"judge {self.model!r} at {self.base_url} failed after {self.max_retries + 1} attempts: {_describe(exc)}",
                    status=_status(exc),
                ) from exc
            raise JudgeError(
                f"judge {self.model!r} at {self.base_url} refused the request: {_describe(exc)}", status=_status(exc)
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def aclose(self) -> None:
        """Close the SDK client of the running event loop."""
        loop = asyncio.get_running_loop()
        with self._clients_lock:
            entry = self._clients.pop(loop, None)
        if entry is not None:
            await entry[1].aclose()

    async def __aenter__(self) -> JudgeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def ask_parsed(
    client: JudgeClient,
    messages: list[dict],
    parse: Callable[[str], T],
    *,
    attempts: int = 3,
    what: str = "judge output",
) -> T:
    """Ask the judge and parse its reply, asking again (up to ``attempts`` times in all) when
    the reply cannot be read. ``parse`` raises ``ValueError`` on unreadable text.

    Raises :class:`JudgeError` naming the last problem and quoting the start of the last reply.
    """
    last_problem, last_raw = "", ""
    for _ in range(max(1, attempts)):
        raw = await client.complete(messages)
        try:
            return parse(raw)
        except ValueError as exc:
            last_problem, last_raw = str(exc), raw
    snippet = " ".join(last_raw.split())[:200]
    quoted = "" if snippet[:40] in last_problem else f" (last reply: {snippet!r})"
    raise JudgeError(f"could not read the {what} after {max(1, attempts)} replies: {last_problem}{quoted}")
