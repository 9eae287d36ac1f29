"""The image downloader's HTTP session: aiohttp, with the SSRF peer check in the connector.

Why aiohttp and not httpx here: a batch downloads hundreds of images on one event loop,
and httpx spends about five times aiohttp's CPU per request (httpcore's pool rescans every
connection, asking each socket whether it is readable, whenever a request starts or ends).
On the benchmark's 194 images that was a quarter of a second of the event loop's time,
spent while other downloads waited for it (``benchmarks/search_concurrency.py``).

The session follows no redirects (the downloader checks every hop itself), reads no proxy
settings from the environment (a proxy would hide the real peer), keeps no cookies (one
image host must not learn what another set) and checks the address each connection
reached *before* the request is written to it: a connection that DNS rebinding sent to a
private address is closed without a byte of the request sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from genevolve_graph.net.netguard import NetPolicy
from genevolve_graph.net.webclient import ssl_context

USER_AGENT = "genevolve-graph/0.1 (image reference fetcher)"
ACCEPT = "image/webp,image/png,image/jpeg,image/gif;q=0.9,*/*;q=0.1"


class PeerCheckedConnector(aiohttp.TCPConnector):
    """A TCP connector whose every connection, new or reused from the pool, must reach an
    address the policy allows for the request's URL (``NetPolicy.check_peer``)."""

    def __init__(self, policy: NetPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        conn = await super().connect(req, traces, timeout)
        transport = conn.transport
        try:
            self.policy.check_peer(str(req.url), transport.get_extra_info("peername") if transport is not None else None)
        except BaseException:
            conn.close()  # not returned to the pool: nothing is sent on it
            raise
        return conn


def image_session(policy: NetPolicy, *, connections: int, connect_timeout: float, read_timeout: float) -> aiohttp.ClientSession:
    """A pooled session for image downloads (create it inside the event loop that uses it).

    ``connections`` bounds the open connections; the total deadline of one download is
    the caller's (``asyncio.timeout``), the connect and per-read timeouts are the session's.
    """
    connector = PeerCheckedConnector(policy, limit=connections, limit_per_host=0, ssl=ssl_context())
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout),
        headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
        raise_for_status=False,
    )


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close ``session`` even if the caller is being cancelled."""
    await asyncio.shield(session.close())
