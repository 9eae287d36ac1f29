"""The lean chat model's HTTP exchange over aiohttp.

Why: an httpx ``AsyncClient.post`` costs about 1.9 ms of client CPU per chat round at the
conversation sizes of a trajectory (request and response models, cookie handling, URL
merging, httpcore's pool and anyio streams); the same exchange through an aiohttp session
costs about 0.75 ms. A batch of rollouts pays it on every round, so it is the largest
single cost once LangChain's bookkeeping is gone (``benchmarks/graph_overhead.py --profile``).

What stays the same as httpx:
- the request: the headers are the ones the httpx client would send (they are taken from
  ``client.build_request`` once), the body is the caller's bytes, the environment's proxy
  (read once per URL, as httpx reads it once per client);
- the reply: bodies are read raw and a ``Content-Encoding`` is undone by httpx's own
  decoders (in ``net.limits``, under the outbound policy's cap and total deadline), so
  whatever httpx can decode this can; HTTP errors become ``httpx.Response``
  objects for the SDK's exception classes; transport and decoding failures become the
  httpx errors the SDK's exceptions are raised from.

Sessions belong to an event loop. Each loop gets its own, held by an async generator that
closes it when the loop shuts its async generators down (``asyncio.run`` does, as do
pytest's and uvloop's runners) or when the transport is garbage collected while its loop
runs; ``aclose()`` closes them explicitly.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
import httpx
from multidict import CIMultiDict

from genevolve_graph.net.limits import Deadline, DeadlineExceeded, OutboundLimits, ReplyTooLarge, aiohttp_chunks, read_body


@dataclass(frozen=True)
class RawReply:
    """One HTTP reply: status, headers and the body as sent (decoded from any content coding)."""

    status: int
    headers: Any
    """A case-insensitive multidict (aiohttp's), without ``Content-Encoding`` once decoded."""
    body: bytes
    charset: str | None

    @property
    def content_type(self) -> str:
        """The whole ``Content-Type`` header (parameters included), or ``""``."""
        return self.headers.get("Content-Type", "")

    def as_httpx(self, url: str) -> httpx.Response:
        """The reply as an ``httpx.Response`` (for the SDK's error classes)."""
        return httpx.Response(self.status, headers=list(self.headers.items()), content=self.body,
                              request=httpx.Request("POST", url))


def _timeout(value: Any) -> aiohttp.ClientTimeout:
    """aiohttp's form of the SDK client's timeout (an ``httpx.Timeout`` or seconds)."""
    if isinstance(value, httpx.Timeout):
        return aiohttp.ClientTimeout(total=None, connect=value.pool, sock_connect=value.connect, sock_read=value.read)
    if value is None:
        return aiohttp.ClientTimeout(total=None)
    return aiohttp.ClientTimeout(total=None, connect=float(value), sock_connect=float(value), sock_read=float(value))


async def _session_lifetime(session: aiohttp.ClientSession) -> AsyncIterator[aiohttp.ClientSession]:
    """Yields ``session`` once and closes it when finalised: the event loop finalises live
    async generators at shutdown (``loop.shutdown_asyncgens``) and when they are collected."""
    try:
        yield session
    finally:
        await session.close()


class AiohttpTransport:
    """POSTs of ready-made bodies through one aiohttp session per event loop (no cookies kept)."""

    def __init__(self, *, timeout: Any, limits: OutboundLimits | None = None, max_connections: int = 512) -> None:
        self._timeout = _timeout(timeout)
        self._limits = limits or OutboundLimits.resolve()
        self._max_connections = max_connections
        self._proxies: dict[str, str | None] = {}
        self._sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, aiohttp.ClientSession]]" = weakref.WeakKeyDictionary()

    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        held = self._sessions.get(loop)
        if held is not None and not held[1].closed:
            return held[1]
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0),
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),  # an API client keeps no cookies (the SDK's httpx client sends none back either)
            auto_decompress=False,  # decoded below by httpx's decoders, so the two transports accept the same replies
            trust_env=False,  # the environment's proxy is looked up once per URL (_proxy), not per request
        )
        lifetime = _session_lifetime(session)
        await lifetime.__anext__()
        self._sessions[loop] = (lifetime, session)
        return session

    def _proxy(self, url: str) -> str | None:
        """The environment's proxy for ``url`` (``tools.webclient.env_proxy``: the proxy
        variables and ``NO_PROXY``, never ``~/.netrc``), read once per URL, as httpx reads
        it once when its client is made."""
        if url not in self._proxies:
            from genevolve_graph.net.webclient import env_proxy

            self._proxies[url] = env_proxy(url)
        return self._proxies[url]

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> RawReply:
        """POST ``body`` with exactly ``headers`` under the outbound policy (``net.limits``:
        one total deadline from connect to last byte, the decoded reply capped while it
        streams); raises ``ReplyTooLarge`` (naming the endpoint and the limit),
        ``httpx.ReadTimeout`` (caused by ``DeadlineExceeded``, which names them too), ``httpx.ConnectError`` (naming the aiohttp cause) when no reply arrives,
        and ``httpx.DecodingError`` when its content coding does not decode."""
        session = await self._session()
        deadline = Deadline(self._limits, url)
        try:
            response = await deadline.run(session.post(url, data=body, headers=headers, allow_redirects=False, proxy=self._proxy(url)))
            async with response:
                coding = response.headers.get("Content-Encoding", "").strip().lower()
                try:
                    raw = await read_body(aiohttp_chunks(response), limits=self._limits, endpoint=url,
                                          content_encoding=coding, deadline=deadline)
                except httpx.DecodingError as exc:
                    raise httpx.DecodingError(f"cannot decode the reply ({coding}): {exc}", request=httpx.Request("POST", url)) from exc
                headers_out = response.headers
                if coding and coding != "identity":
                    headers_out = CIMultiDict(response.headers)
                    headers_out.popall("Content-Encoding", None)
                return RawReply(response.status, headers_out, raw, response.charset)
        except ReplyTooLarge:
            raise
        except DeadlineExceeded as exc:  # the SDK's timeout, caused by the limit (net.limits.limit_exceeded finds it)
            raise httpx.ReadTimeout(str(exc), request=httpx.Request("POST", url)) from exc
        except asyncio.TimeoutError as exc:
            raise httpx.ReadTimeout(f"no reply within the timeout ({exc.__class__.__name__})",
                                    request=httpx.Request("POST", url)) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ConnectError(str(exc) or exc.__class__.__name__, request=httpx.Request("POST", url)) from exc

    async def aclose(self) -> None:
        """Close this loop's session (the others close with their loops)."""
        held = self._sessions.pop(asyncio.get_running_loop(), None)
        if held is not None:
            await held[0].aclose()


def httpx_request_headers(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, str]:
    """The headers ``client`` would send with a POST of ``headers`` to ``url``, less the
    body's length (aiohttp sets it from the body, to the same value)."""
    built = client.build_request("POST", url, content=b"", headers=headers)
    return {name: value for name, value in built.headers.items() if name.lower() != "content-length"}


__all__ = ["AiohttpTransport", "RawReply", "httpx_request_headers"]
