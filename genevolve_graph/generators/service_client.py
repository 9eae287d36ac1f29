"""The service backend: render through one or more render services over HTTP.

Speaks the ``POST /generate`` contract of DESIGN.md §4, so it works with our
``serve-renderer`` and with Gen-Searcher's and GenEvolve's Qwen-Image-Edit servers
(which ignore ``width``/``height``). Several endpoints (one per GPU, usually) are used
round-robin, each with its own bound on requests in flight; a 503, a 5xx, a
``success: false`` answer, a timeout or a refused connection moves the request to the
next endpoint after a backoff (the server's ``Retry-After`` when it gives one). A 4xx is
the request's own fault and is reported at once, with the server's message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import logging
import os
import random
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

from genevolve_graph.generators.base import RenderError
from genevolve_graph.net.limits import OutboundLimits, ReplyTooLarge, env_max_reply_bytes, limit_exceeded, limited_client
from genevolve_graph.generators.diffusers_backend import GenerationDefaults, generation_defaults_from_options
from genevolve_graph.core.options import get_float, get_int, get_list
from genevolve_graph.generators.references import prepare_program_references
from genevolve_graph.safety.imaging import UnsafeImageError, decode_image_bytes, sniff_format, to_data_uri
from genevolve_graph.safety.redaction import redact_text
from genevolve_graph.core.state import Program, RenderResult

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

log = logging.getLogger(__name__)

TOKEN_ENV = "GENEVOLVE_SERVICE_TOKEN"
SERVICE_MAX_REFERENCE_BYTES = 12 * 1024 * 1024
"""References above this are re-encoded before sending (the service's default limit)."""
MAX_RESPONSE_PIXELS = 64_000_000
SERVICE_MAX_REPLY_BYTES = 256 * 1024 * 1024
"""A render reply is base64 of an image of up to MAX_RESPONSE_PIXELS: far more than a chat
reply, so the render service's default cap is above the outbound policy's general one."""


@dataclass(frozen=True)
class ServiceConfig:
    """The service backend's options, read from ``AgentContext.options``."""

    urls: tuple[str, ...]
    concurrency: int = 2
    timeout: float = 1800.0
    retries: int = 3
    retry_delay: float = 1.0
    max_retry_delay: float = 60.0
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)
    max_reply_bytes: int = SERVICE_MAX_REPLY_BYTES
    """The outbound reply cap (``net.limits``); ``timeout`` is the request's total deadline."""
    token: str | None = field(default=None, repr=False)
    """Bearer token for services started with ``--token``: from ``GENEVOLVE_SERVICE_TOKEN``,
    never from options (options reach checkpoints and Studio)."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "ServiceConfig":
        try:
            urls = get_list(options, "service_urls")
            if not urls:
                raise ValueError(
                    "the service renderer needs at least one render service URL: set the option 'service_urls' "
                    "(run --renderer service --service-url http://HOST:8001)"
                )
            for url in urls:
                parsed = httpx.URL(url)
                if parsed.scheme not in ("http", "https") or not parsed.host:
                    raise ValueError(f"option 'service_urls': {url!r} is not an http(s) URL")
            return cls(
                urls=tuple(url.rstrip("/") for url in urls),
                concurrency=get_int(options, "service_concurrency", 2, minimum=1),
                timeout=get_float(options, "service_timeout", 1800.0, minimum=0.001),
                retries=get_int(options, "service_retries", 3, minimum=0),
                retry_delay=get_float(options, "service_retry_delay", 1.0, minimum=0.0),
                max_reply_bytes=env_max_reply_bytes(SERVICE_MAX_REPLY_BYTES),
                generation=generation_defaults_from_options(options),
                token=os.environ.get(TOKEN_ENV, "").strip() or None,
            )
        except (ValueError, httpx.InvalidURL) as exc:
            raise RenderError(str(exc)) from None


class _Retryable(Exception):
    """An attempt that failed in a way another attempt (or endpoint) may fix."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _PerLoop:
    """Per-event-loop state (httpx clients and asyncio semaphores are bound to one loop)."""

    def __init__(self, config: ServiceConfig) -> None:
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else None
        limits = OutboundLimits(max_reply_bytes=config.max_reply_bytes, total_deadline_s=config.timeout)
        self.client = limited_client(limits, connect_timeout=10.0, headers=headers)
        self.slots = {url: asyncio.Semaphore(config.concurrency) for url in config.urls}


@dataclass(frozen=True)
class ReplyImage:
    """A reply's image: the bytes as sent and the decoded image (decoding is the safety check)."""

    data: bytes
    image: Image.Image

    def save(self, out_path: Path) -> None:
        """Write a PNG: the received bytes when they are PNG (no second encode), else re-encoded."""
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if sniff_format(self.data) == "PNG":
            out_path.write_bytes(self.data)
        else:
            self.image.save(out_path, format="PNG")


def decode_reply_image(payload: Mapping[str, Any]) -> ReplyImage:
    """The image of a success reply (``image``, or ``image_base64`` as some servers name it)."""
    encoded = payload.get("image") or payload.get("image_base64")
    if not isinstance(encoded, str) or not encoded:
        raise RenderError("the render service answered success without an image")
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RenderError(f"the render service sent invalid base64: {exc}") from None
    try:
        image = decode_image_bytes(data, max_pixels=MAX_RESPONSE_PIXELS, max_bytes=max(len(data), 1))
    except UnsafeImageError as exc:
        raise RenderError(f"the render service sent an unusable image: {exc}") from None
    return ReplyImage(data, image)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("error") or payload.get("detail") or payload)[:2000]
    return str(payload)[:2000]


class ServiceRenderer:
    """Renders programs through render services (round-robin, bounded, retried, failing over)."""

    name = "service"

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self._next = itertools.count()
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PerLoop] = weakref.WeakKeyDictionary()

    def _state(self) -> _PerLoop:
        loop = asyncio.get_running_loop()
        state = self._per_loop.get(loop)
        if state is None:
            state = self._per_loop[loop] = _PerLoop(self.config)
        return state

    async def aclose(self) -> None:
        """Close this loop's HTTP connections (optional: they are also closed with the loop)."""
        state = self._per_loop.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.aclose()

    def payload(self, program: Program, reference_uris: list[str], sizes: list[tuple[int, int]], seed: int) -> dict[str, Any]:
        """The request body for a program (sizes: the references' pixel sizes)."""
        generation = self.config.generation
        width, height = generation.size_for(sizes[0] if sizes else None)
        try:  # a lone surrogate cannot travel as JSON text: the request's own fault, sent to nobody
            program.gen_prompt.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RenderError(
                f"gen_prompt is not valid Unicode: a lone surrogate U+{ord(program.gen_prompt[exc.start]):04X} at character {exc.start}"
            ) from None
        return {
            "image_urls": reference_uris,
            "prompt": program.gen_prompt,
            "seed": int(seed),
            "true_cfg_scale": generation.true_cfg_scale,
            "negative_prompt": generation.negative_prompt,
            "num_inference_steps": generation.num_inference_steps,
            "guidance_scale": generation.guidance_scale,
            "num_images_per_prompt": 1,
            "width": width,
            "height": height,
        }

    async def render(self, program: Program, out_path: Path, *, seed: int = 0) -> RenderResult:
        started = time.perf_counter()
        out_path = Path(out_path)
        try:
            uris, sizes = await asyncio.to_thread(_encode_references, program)
            payload = self.payload(program, uris, sizes, seed)
            reply = await self._post_with_retries(payload)
            await asyncio.to_thread(reply.save, out_path)
        except RenderError as exc:
            return RenderResult(success=False, backend=self.name, error=str(exc), seconds=time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - a backend failure is a result, not a crash of the graph
            log.exception("service render failed")
            return RenderResult(success=False, backend=self.name, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started)
        return RenderResult(success=True, output_path=str(out_path), backend=self.name, seconds=time.perf_counter() - started,
                            notes=self.config.generation.notes())

    async def _post_with_retries(self, payload: dict[str, Any]) -> ReplyImage:
        state = self._state()
        urls = self.config.urls
        failures: list[str] = []
        for attempt in range(self.config.retries + 1):
            url = urls[next(self._next) % len(urls)]
            try:
                async with state.slots[url]:
                    return await self._post_once(state.client, url, payload)
            except _Retryable as exc:
                failures.append(redact_text(f"{url}: {exc}"))
                if attempt == self.config.retries:
                    break
                delay = min(self.config.max_retry_delay, self.config.retry_delay * 2**attempt) * (0.5 + random.random() / 2)
                if exc.retry_after is not None and len(urls) == 1:
                    # Only one endpoint: wait as long as it asked. Several: try the next one sooner.
                    delay = max(delay, min(exc.retry_after, self.config.max_retry_delay))
                log.info("render attempt %d failed (%s); retrying in %.2f s", attempt + 1, failures[-1], delay)
                await asyncio.sleep(delay)
        raise RenderError(f"render service failed after {len(failures)} attempt(s): " + " | ".join(failures[-4:]))

    async def _post_once(self, client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> ReplyImage:
        try:
            response = await client.post(f"{url}/generate", json=payload)
        except ReplyTooLarge as exc:  # the same request would get the same reply
            raise RenderError(str(exc)) from None
        except httpx.TimeoutException as exc:
            what = "the total deadline" if limit_exceeded(exc) is not None else "the timeout"
            raise _Retryable(f"no answer within {what} of {self.config.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from None
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise _Retryable(f"HTTP {status}: {_message(response)}", retry_after=_retry_after(response))
        if status >= 400:
            # a 4xx is the request's own fault: another attempt would get the same answer
            raise RenderError(redact_text(f"render service {url} refused the request (HTTP {status}): {_message(response)}"))
        try:
            body = response.json()
        except ValueError:
            raise _Retryable(f"HTTP {status} with a body that is not JSON") from None
        if not isinstance(body, dict) or not body.get("success"):
            message = body.get("message") or body.get("error") if isinstance(body, dict) else body
            raise _Retryable(f"the service reported a failed render: {str(message)[:500]}")
        return await asyncio.to_thread(decode_reply_image, body)


def _encode_references(program: Program) -> tuple[list[str], list[tuple[int, int]]]:
    prepared = prepare_program_references(program, max_bytes=SERVICE_MAX_REFERENCE_BYTES)
    return [to_data_uri(item.data, item.mime) for item in prepared], [item.size for item in prepared]


def from_context(ctx: "AgentContext") -> ServiceRenderer:
    """Registry factory: the service renderer configured by ``ctx.options``."""
    return ServiceRenderer(ServiceConfig.from_options(ctx.options))
