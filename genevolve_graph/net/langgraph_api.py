"""Limits on what a LangGraph API server may send back (``batch --server``, ``render --server``).

A server's replies are data from outside, like a web page: a thread state of hundreds of
megabytes, or a ``runs.join`` that never ends, must not hold the batch without limit.
:func:`capped_client` is ``langgraph_sdk.get_client`` with every reply's body capped
(``max_reply_bytes``; replies are asked for uncompressed, so the cap is on what is decoded,
and a compressed reply is refused), and :func:`within_deadline` bounds one call in total
time. Both errors name the server and the limit. (Issue 22 item 12; the outbound-call policy
of item 6 may later take these limits over for every client.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import httpx

DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024
"""A thread state of the agent or the render graph is kilobytes to a few megabytes."""
DEFAULT_JOIN_TIMEOUT = 3600.0
"""Seconds one row's run may take on the server, joined (generous: a queue may wait)."""

T = TypeVar("T")


class ServerReplyError(RuntimeError):
    """A LangGraph server's reply broke a limit; the message names the server and the limit."""


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int, where: str) -> None:
        self.inner, self.limit, self.where = inner, limit, where

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.inner:
            seen += len(chunk)
            if seen > self.limit:
                raise ServerReplyError(f"the reply of {self.where} is larger than {self.limit:,} bytes (max_reply_bytes); "
                                       "the server sent more than a thread's state, check the server")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class CappedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose replies stop with :class:`ServerReplyError` past ``limit`` bytes."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limit: int) -> None:
        self.inner, self.limit = inner, limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        where = f"{request.method} {request.url.copy_with(query=None)}"
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            await response.aclose()
            raise ServerReplyError(f"the reply of {where} is {encoding}-compressed although an uncompressed reply was asked for")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await response.aclose()
            raise ServerReplyError(f"the reply of {where} announces {int(length):,} bytes, more than {self.limit:,} (max_reply_bytes)")
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers, stream=_CappedStream(response.stream, self.limit, where),
                              extensions=response.extensions, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def capped_client(url: str, api_key: str | None = None, *, max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> Any:
    """A langgraph-sdk async client for ``url`` whose every reply is capped at ``max_reply_bytes``."""
    from langgraph_sdk import get_client
    from langgraph_sdk.client import LangGraphClient

    plain = get_client(url=url, api_key=api_key, headers={"Accept-Encoding": "identity"})
    inner = plain.http.client
    client = httpx.AsyncClient(base_url=inner.base_url, timeout=inner.timeout, headers=inner.headers,
                               transport=CappedTransport(httpx.AsyncHTTPTransport(retries=5), max_reply_bytes))
    return LangGraphClient(client)


async def within_deadline(call: Awaitable[T], seconds: float, what: str) -> T:
    """``await call``, or :class:`ServerReplyError` naming ``what`` once ``seconds`` have passed."""
    try:
        return await asyncio.wait_for(call, timeout=seconds)
    except asyncio.TimeoutError:
        raise ServerReplyError(f"{what} did not finish within {seconds:g} s (join_timeout); the run may still be going on the server, "
                               "rerun the command to resume it") from None


__all__ = ["CappedTransport", "DEFAULT_JOIN_TIMEOUT", "DEFAULT_MAX_REPLY_BYTES", "ServerReplyError", "capped_client", "within_deadline"]
