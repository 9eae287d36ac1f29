"""The one outbound-call policy: every HTTP client the project owns reads its replies here.

Two limits hold for every request, whoever the endpoint is (policy, judge, search API,
image host, render service, recipe endpoint):

- ``max_reply_bytes``: the reply body *after* its content coding is undone. The body is
  decoded while it streams, in small slices, so a 1 MiB gzip reply that would expand to
  1 GiB is refused after about ``max_reply_bytes`` without ever being held whole.
- ``total_deadline_s``: the whole request, connect to last byte. A socket read timeout
  alone lets a server that sends one byte every few seconds hold a request forever.

Why one module: a cap that each client re-implements drifts (the aiohttp chat transport read
whole bodies, the judges had only per-read timeouts). aiohttp clients read through
:func:`read_body`; httpx clients get :class:`LimitedTransport`. A refusal raises
:class:`ReplyTooLarge` or :class:`DeadlineExceeded`, whose message names the endpoint
(credentials removed) and the limit; through httpx a deadline is an ``httpx.ReadTimeout``
caused by it (so SDKs raise their timeout errors), and :func:`limit_exceeded` finds the
refusal in any wrapped error.

The operator chooses the limits: each client's deadline is its existing timeout setting
(``request_timeout``, the judge's ``--timeout``, ``service_timeout``, ...), and
``GENEVOLVE_MAX_REPLY_BYTES`` in the environment replaces the default reply cap of every
client that is not given one explicitly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
from httpx._decoders import SUPPORTED_DECODERS
from httpx._utils import get_environment_proxies

from genevolve_graph.safety.redaction import redact_url
from genevolve_graph.util.causes import caused_by

MAX_REPLY_ENV = "GENEVOLVE_MAX_REPLY_BYTES"
DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024
"""64 MiB of decoded reply: a chat completion of 4096 tokens is tens of KiB, a search API
page a few hundred KiB; far above what a real endpoint sends, far below what hurts."""
DEFAULT_TOTAL_DEADLINE_S = 600.0

_SLICE = {"gzip": 1024, "deflate": 1024}
"""Compressed bytes fed to a decoder at a time: deflate expands at most ~1032:1, so a
1 KiB slice yields at most ~1 MiB before the cap is checked again. Other codings (zstd,
brotli) can expand far more per byte, so they are fed 64 bytes at a time."""
_OTHER_SLICE = 64


class OutboundLimitExceeded(Exception):
    """A reply broke the outbound policy; the message names the endpoint and the limit."""

    def __init__(self, message: str, *, endpoint: str, limit: float) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.limit = limit


class ReplyTooLarge(OutboundLimitExceeded):
    """The decoded reply grew past ``max_reply_bytes``. Not transient: the same request
    would get the same reply."""


class DeadlineExceeded(OutboundLimitExceeded, TimeoutError):
    """The request did not finish within ``total_deadline_s`` (a timeout, so code that
    retries timeouts retries it)."""


def limit_exceeded(exc: BaseException | None) -> OutboundLimitExceeded | None:
    """The :class:`OutboundLimitExceeded` that ``exc`` is or was caused by (SDKs wrap the
    errors a transport raises), or None."""
    return caused_by(exc, OutboundLimitExceeded)


def env_max_reply_bytes(default: int = DEFAULT_MAX_REPLY_BYTES) -> int:
    """``GENEVOLVE_MAX_REPLY_BYTES`` when the operator set it, else ``default``."""
    raw = os.environ.get(MAX_REPLY_ENV, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_REPLY_ENV}={raw!r} is not a whole number of bytes; set it to a positive integer or unset it") from None
    if value <= 0:
        raise ValueError(f"{MAX_REPLY_ENV}={raw!r} must be positive; set it to a positive integer or unset it")
    return value


@dataclass(frozen=True)
class OutboundLimits:
    """The two limits of one outbound request (see the module docstring)."""

    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    total_deadline_s: float = DEFAULT_TOTAL_DEADLINE_S

    def __post_init__(self) -> None:
        if self.max_reply_bytes <= 0:
            raise ValueError(f"max_reply_bytes must be positive, not {self.max_reply_bytes}")
        if not self.total_deadline_s > 0:
            raise ValueError(f"total_deadline_s must be positive, not {self.total_deadline_s}")

    @classmethod
    def resolve(cls, total_deadline_s: float | None = None, max_reply_bytes: int | None = None) -> "OutboundLimits":
        """The limits of a client: what it is given, else ``GENEVOLVE_MAX_REPLY_BYTES`` (for
        the reply cap) and the defaults."""
        return cls(max_reply_bytes=max_reply_bytes if max_reply_bytes is not None else env_max_reply_bytes(),
                   total_deadline_s=float(total_deadline_s) if total_deadline_s is not None else DEFAULT_TOTAL_DEADLINE_S)

    def with_deadline(self, total_deadline_s: float) -> "OutboundLimits":
        return replace(self, total_deadline_s=float(total_deadline_s))

    def too_large(self, endpoint: str) -> ReplyTooLarge:
        where = redact_url(endpoint)
        return ReplyTooLarge(
            f"the reply from {where} exceeds the outbound reply cap of {self.max_reply_bytes} bytes (decoded); "
            f"raise {MAX_REPLY_ENV} if this endpoint really sends more",
            endpoint=where, limit=self.max_reply_bytes)

    def too_slow(self, endpoint: str) -> DeadlineExceeded:
        where = redact_url(endpoint)
        return DeadlineExceeded(
            f"the request to {where} did not finish within its total deadline of {self.total_deadline_s:g} s",
            endpoint=where, limit=self.total_deadline_s)


class ReplyDecoder:
    """Undoes a ``Content-Encoding`` (with httpx's decoders, so every client accepts what
    httpx accepts) in small slices, counting the decoded bytes against the cap."""

    def __init__(self, content_encoding: str, limits: OutboundLimits, endpoint: str) -> None:
        self._limits = limits
        self._endpoint = endpoint
        self._decoders: list[tuple[Any, int]] = []
        for value in reversed([v.strip().lower() for v in content_encoding.split(",")]):
            if value in SUPPORTED_DECODERS and value != "identity":
                self._decoders.append((SUPPORTED_DECODERS[value](), _SLICE.get(value, _OTHER_SLICE)))
        self.size = 0

    def _count(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self._limits.max_reply_bytes:
            raise self._limits.too_large(self._endpoint)
        return data

    def _feed(self, stage: int, data: bytes, out: list[bytes]) -> None:
        if stage == len(self._decoders):
            if data:
                out.append(self._count(data))
            return
        decoder, step = self._decoders[stage]
        for at in range(0, len(data), step):
            self._feed(stage + 1, decoder.decode(data[at:at + step]), out)

    def decode(self, data: bytes) -> bytes:
        """The decoded bytes of the next raw chunk (``ReplyTooLarge`` past the cap)."""
        if not self._decoders:
            return self._count(data)
        out: list[bytes] = []
        self._feed(0, data, out)
        return b"".join(out)

    def flush(self) -> bytes:
        out: list[bytes] = []
        for stage, (decoder, _step) in enumerate(self._decoders):
            self._feed(stage + 1, decoder.flush(), out)
        return b"".join(out)


class Deadline:
    """The deadline of one request, started when it is made."""

    def __init__(self, limits: OutboundLimits, endpoint: str) -> None:
        self.limits = limits
        self.endpoint = endpoint
        self.at = asyncio.get_running_loop().time() + limits.total_deadline_s

    async def run(self, awaitable: Any) -> Any:
        """``await awaitable``, or :class:`DeadlineExceeded` once the deadline passes."""
        try:
            async with asyncio.timeout_at(self.at):
                return await awaitable
        except TimeoutError as exc:
            if isinstance(exc, OutboundLimitExceeded) or asyncio.get_running_loop().time() < self.at:
                raise
            raise self.limits.too_slow(self.endpoint) from None


async def read_body(chunks: AsyncIterable[bytes], *, limits: OutboundLimits, endpoint: str,
                    content_encoding: str = "", deadline: Deadline | None = None) -> bytes:
    """The whole reply body of ``chunks`` (raw chunks as received), decoded from
    ``content_encoding`` under ``limits``; ``deadline`` is the request's when it was started
    earlier (else one starts now)."""
    deadline = deadline or Deadline(limits, endpoint)
    decoder = ReplyDecoder(content_encoding, limits, endpoint)
    parts: list[bytes] = []
    iterator = chunks.__aiter__()
    while True:
        try:
            chunk = await deadline.run(iterator.__anext__())
        except StopAsyncIteration:
            break
        parts.append(decoder.decode(chunk))
    parts.append(decoder.flush())
    return b"".join(parts)


def aiohttp_chunks(response: Any) -> AsyncIterator[bytes]:
    """The body chunks of an aiohttp response as they arrive."""
    return response.content.iter_any()


class _LimitedStream(httpx.AsyncByteStream):
    """A reply stream decoded and counted as it is read, each read bounded by the deadline."""

    def __init__(self, inner: httpx.AsyncByteStream, decoder: ReplyDecoder, deadline: Deadline, request: httpx.Request) -> None:
        self._request = request
        self._inner = inner
        self._decoder = decoder
        self._deadline = deadline

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = self._inner.__aiter__()
        while True:
            try:
                chunk = await self._deadline.run(iterator.__anext__())
            except StopAsyncIteration:
                break
            except DeadlineExceeded as exc:
                raise httpx.ReadTimeout(str(exc), request=self._request) from exc
            decoded = self._decoder.decode(chunk)
            if decoded:
                yield decoded
        tail = self._decoder.flush()
        if tail:
            yield tail

    async def aclose(self) -> None:
        await self._inner.aclose()


class LimitedTransport(httpx.AsyncBaseTransport):
    """An httpx transport under the outbound policy: the request (connect, headers, every
    body read) ends at the total deadline, and the reply is decoded here, under the cap,
    so httpx and the SDKs above it only ever see bounded, already-decoded bytes."""

    def __init__(self, outbound: OutboundLimits, inner: httpx.AsyncBaseTransport | None = None,
                 **transport_options: Any) -> None:
        self.limits = outbound
        self._inner = inner or httpx.AsyncHTTPTransport(**transport_options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = str(request.url)
        deadline = Deadline(self.limits, endpoint)
        try:
            response = await deadline.run(self._inner.handle_async_request(request))
        except DeadlineExceeded as exc:  # httpx's own timeout type, for the SDKs above; the cause says which limit
            raise httpx.ReadTimeout(str(exc), request=request) from exc
        coding = response.headers.get("content-encoding", "")
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if not (coding and k.lower() in ("content-encoding", "content-length"))]
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and not coding and int(declared) > self.limits.max_reply_bytes:
            await response.aclose()
            raise self.limits.too_large(endpoint)
        stream = _LimitedStream(response.stream, ReplyDecoder(coding, self.limits, endpoint), deadline, request)  # type: ignore[arg-type]
        return httpx.Response(response.status_code, headers=headers, stream=stream, extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


def limited_client(outbound: OutboundLimits, *, connect_timeout: float | None = None,
                   event_hooks: dict[str, list[Callable[..., Any]]] | None = None, **client_options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` under ``outbound``: per-read timeouts no longer than the
    deadline, the total deadline and reply cap by :class:`LimitedTransport`."""
    transport_options = {k: client_options.pop(k) for k in ("limits", "verify", "http2", "retries") if k in client_options}
    connect = min(connect_timeout or outbound.total_deadline_s, outbound.total_deadline_s)
    # The environment's proxies get their own limited transports: httpx would otherwise
    # mount plain proxy transports beside ours, and proxied replies would escape the limits.
    mounts = {pattern: (LimitedTransport(outbound, proxy=proxy, **transport_options) if proxy else None)
              for pattern, proxy in get_environment_proxies().items()}
    return httpx.AsyncClient(
        transport=LimitedTransport(outbound, **transport_options), mounts=mounts,
        timeout=httpx.Timeout(outbound.total_deadline_s, connect=connect),
        event_hooks=event_hooks, **client_options)


async def probe(url: str, *, deadline_s: float = 10.0, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a GET of ``url`` within ``deadline_s`` in all, reading no body
    (a reachability check: a hostile endpoint cannot make it read or wait for more).
    Raises ``httpx.HTTPError`` (a timeout caused by :class:`DeadlineExceeded`) when no
    status arrives in time."""
    async with limited_client(OutboundLimits.resolve(total_deadline_s=deadline_s)) as client:
        async with client.stream("GET", url, headers=headers) as response:
            return response.status_code


__all__ = ["DEFAULT_MAX_REPLY_BYTES", "DEFAULT_TOTAL_DEADLINE_S", "MAX_REPLY_ENV", "Deadline", "DeadlineExceeded",
           "LimitedTransport", "OutboundLimitExceeded", "OutboundLimits", "ReplyDecoder", "ReplyTooLarge", "aiohttp_chunks", "env_max_reply_bytes",
           "limit_exceeded", "limited_client", "probe", "read_body"]
