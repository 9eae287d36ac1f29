"""Calling a search API robustly: retries with backoff, clear failures, no leaked keys.

Every web backend sends its request through ``call_json``: 429, 5xx, timeouts and dropped
connections are retried with exponential backoff and jitter (tenacity), honouring a
``Retry-After`` header up to the maximum delay; whatever still fails becomes a
``BackendUnavailable`` whose message names the service and the cause in words the policy
can act on. Secret values passed in ``secrets`` are scrubbed from every message and log
line, whatever produced them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import ssl
import urllib.request
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from genevolve_graph.net.errors import BackendUnavailable
from genevolve_graph.net.limits import Deadline, DeadlineExceeded, OutboundLimits, ReplyTooLarge, aiohttp_chunks, read_body

log = logging.getLogger("genevolve_graph.tools.web")

StatusHint = Callable[[int], str | None]
"""Backend-specific wording for a non-retryable HTTP status (None: the generic one)."""


@dataclass(frozen=True)
class RetrySettings:
    """``retries`` extra attempts after the first; delays in seconds."""

    retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0


@dataclass(frozen=True)
class Reply:
    """A finished API reply: status, headers and the whole body (read inside the attempt,
    so that a connection dropped mid-body is retried like any other transport failure)."""

    status: int
    headers: Any  # a case-insensitive mapping
    body: bytes


class RetryableStatus(Exception):
    """A 429 or 5xx reply, raised inside the retry loop so tenacity can retry it."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """One verified TLS context for all clients (building one costs milliseconds each)."""
    return httpx.create_ssl_context()


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


def environment_secrets() -> list[str]:
    """Values of environment variables whose names say they are secrets (8+ characters),
    for scrubbing messages that came from third-party code (LangChain tools, ddgs)."""
    return [value for name, value in os.environ.items() if _SECRET_NAME.search(name) and len(value) >= 8]


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: enough to name a service, nothing more."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _is_retryable(exc: BaseException) -> bool:
    # Timeouts (aiohttp's are TimeoutErrors too) and a server that dropped the connection
    # or cut the body short; refused connections are not retried (the service is down).
    return isinstance(exc, (RetryableStatus, TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError))


def _retry_after(exc: BaseException | None) -> float | None:
    if not isinstance(exc, RetryableStatus):
        return None
    value = exc.reply.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        import datetime as _dt

        when = parsedate_to_datetime(value)
        return max(0.0, (when - _dt.datetime.now(when.tzinfo)).total_seconds())
    except (TypeError, ValueError):
        return None


class _BackoffWait:
    """Exponential backoff with jitter, or the server's Retry-After when it asks for longer."""

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
        self.backoff = wait_exponential_jitter(
            initial=settings.initial_delay, max=settings.max_delay, jitter=settings.initial_delay
        )

    def __call__(self, state: RetryCallState) -> float:
        delay = self.backoff(state)
        asked = _retry_after(state.outcome.exception() if state.outcome else None)
        if asked is not None:
            delay = max(delay, min(asked, self.settings.max_delay))
        return delay


async def call_json(
    client: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    service: str,
    tool: str = "search",
    retry: RetrySettings,
    secrets: Iterable[str] = (),
    status_hint: StatusHint | None = None,
    non_json_hint: str | None = None,
    limits: OutboundLimits | None = None,
    **request: Any,
) -> Any:
    """Send one API request with retries and return its JSON body.

    ``service`` names the backend in messages (for example ``serper``), ``tool`` is the
    tool whose observation the failure becomes (``search`` or ``image_search``).
    Raises ``BackendUnavailable`` for every failure, with secrets scrubbed. Each attempt is
    under the outbound policy (``net.limits``): ``limits``, by default the session's read
    timeout as the total deadline and the default reply cap.
    """
    if limits is None:
        read = client.timeout.sock_read
        limits = OutboundLimits.resolve(total_deadline_s=read if read else None)
    secrets = tuple(s for s in secrets if s)
    where = origin(url)
    attempts = retry.retries + 1

    def fail(reason: str) -> BackendUnavailable:
        return BackendUnavailable(redact(f"{tool} unavailable: {service} at {where} {reason}", secrets))

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        message = f"{service}: attempt {state.attempt_number}/{attempts} failed ({_describe(exc)}); retrying in {state.upcoming_sleep:.2f}s"
        log.warning("%s", redact(message, secrets))

    reply: Reply | None = None
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=_BackoffWait(retry),
            retry=retry_if_exception(_is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                deadline = Deadline(limits, url)
                response = await deadline.run(client.request(method, url, allow_redirects=False, proxy=env_proxy(url), **request))
                async with response:  # the session undoes the content coding in bounded steps; the cap counts what it yields
                    body = await read_body(aiohttp_chunks(response), limits=limits, endpoint=url, deadline=deadline)
                    reply = Reply(response.status, response.headers, body)
                if reply.status == 429 or reply.status >= 500:
                    raise RetryableStatus(reply)
    except RetryableStatus as exc:
        code = exc.reply.status
        what = "is rate limiting requests (HTTP 429)" if code == 429 else f"returned HTTP {code}"
        raise fail(f"{what} after {attempts} attempt(s)") from None
    except ReplyTooLarge:
        raise fail(f"sent a reply over the outbound reply cap of {limits.max_reply_bytes} bytes (decoded)") from None
    except DeadlineExceeded:
        raise fail(f"did not answer within the total deadline of {limits.total_deadline_s:g} s, {attempts} attempt(s)") from None
    except TimeoutError:
        raise fail(f"timed out after {attempts} attempt(s)") from None
    except aiohttp.ClientConnectorError as exc:
        raise fail(f"is unreachable ({_describe(exc)})") from None
    except aiohttp.ClientError as exc:
        raise fail(f"failed ({_describe(exc)})") from None
    assert reply is not None
    if reply.status >= 400:
        hint = status_hint(reply.status) if status_hint else None
        raise fail(hint or f"returned HTTP {reply.status}")
    try:
        return json.loads(reply.body)
    except ValueError:  # also UnicodeDecodeError
        ctype = reply.headers.get("content-type", "?").split(";")[0]
        raise fail(non_json_hint or f"returned a non-JSON reply (Content-Type {ctype})") from None


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``/``HTTP_PROXY``, else
    ``ALL_PROXY``; none when ``NO_PROXY`` covers the host), read at call time.

    This is the part of httpx's ``trust_env`` the API calls relied on. aiohttp's own
    ``trust_env`` would also send ``~/.netrc`` credentials, which no endpoint was
    configured to receive, and costs two thread hops per request."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxy


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, RetryableStatus):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _Shared:
    client: aiohttp.ClientSession
    users: int = 0


_API_CLIENTS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Shared]]" = weakref.WeakKeyDictionary()


@asynccontextmanager
async def api_client(timeout: float) -> AsyncIterator[aiohttp.ClientSession]:
    """A pooled HTTP session for configured API endpoints, shared by the concurrent calls
    of this event loop (one TLS handshake per service, not per query) and closed as soon
    as no call uses it. It carries no credentials (each request passes its own headers)
    and keeps no cookies. Environment proxies are honoured (``env_proxy``). ``timeout`` bounds the
    connect and every read, as httpx's did.

    aiohttp rather than httpx: a batch's 64 concurrent searches cost httpx about five times
    the CPU (its connection pool rescans every connection whenever a request starts or
    ends), and that time delayed every download waiting on the same event loop
    (``benchmarks/search_concurrency.py``)."""
    clients = _API_CLIENTS.setdefault(asyncio.get_running_loop(), {})
    shared = clients.get(timeout)
    if shared is None:
        connect = min(timeout, 10.0)
        client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context()),
            timeout=aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=timeout),
            trust_env=False,  # proxies come from env_proxy; no ~/.netrc credentials
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        shared = clients[timeout] = _Shared(client)
    shared.users += 1
    try:
        yield shared.client
    finally:
        shared.users -= 1
        if shared.users == 0 and clients.get(timeout) is shared:
            del clients[timeout]
            await asyncio.shield(shared.client.close())
