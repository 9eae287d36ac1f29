"""Limits on what a LangGraph API server may send back (``batch --server``, ``render --server``).

A server's replies are data from outside, like a web page: a thread state of hundreds of
megabytes, or a ``runs.join`` that never ends, must not hold the batch without limit.
:func:`capped_client` is ``langgraph_sdk.get_client`` under the one outbound-call policy
(``net.limits``): every reply decoded under ``max_reply_bytes`` as it streams, every request
within a total deadline; :func:`within_deadline` bounds one ``runs.join`` in total time.
The errors name the server call and the limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from genevolve_graph.net.limits import OutboundLimits, limited_client

DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024
"""A thread state of the agent or the render graph is kilobytes to a few megabytes."""
DEFAULT_JOIN_TIMEOUT = 3600.0
"""Seconds one row's run may take on the server, joined (generous: a queue may wait)."""

T = TypeVar("T")


class ServerReplyError(RuntimeError):
    """A LangGraph server's reply broke a limit; the message names the server and the limit."""


def capped_client(url: str, api_key: str | None = None, *, max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
                  total_deadline_s: float = DEFAULT_JOIN_TIMEOUT) -> Any:
    """A langgraph-sdk async client for ``url`` under the outbound-call policy
    (``net.limits``): every reply decoded under ``max_reply_bytes`` (a compressed reply
    that expands past it is refused as it streams), every request within
    ``total_deadline_s``. A refusal is ``net.limits.ReplyTooLarge`` / ``DeadlineExceeded``
    naming the server call."""
    from langgraph_sdk import get_client
    from langgraph_sdk.client import LangGraphClient

    inner = get_client(url=url, api_key=api_key).http.client  # the SDK's base URL and headers (API key, user agent)
    client = limited_client(OutboundLimits.resolve(total_deadline_s=total_deadline_s, max_reply_bytes=max_reply_bytes),
                            base_url=inner.base_url, headers=inner.headers, retries=5)
    return LangGraphClient(client)


async def within_deadline(call: Awaitable[T], seconds: float, what: str) -> T:
    """``await call``, or :class:`ServerReplyError` naming ``what`` once ``seconds`` have passed."""
    try:
        return await asyncio.wait_for(call, timeout=seconds)
    except asyncio.TimeoutError:
        raise ServerReplyError(f"{what} did not finish within {seconds:g} s (join_timeout); the run may still be going on the server, "
                               "rerun the command to resume it") from None


__all__ = ["DEFAULT_JOIN_TIMEOUT", "DEFAULT_MAX_REPLY_BYTES", "ServerReplyError", "capped_client", "within_deadline"]
