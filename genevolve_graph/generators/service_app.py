"""The render service: one diffusers pipeline behind ``POST /generate`` and ``GET /health``.

The wire contract is the one of DESIGN.md §4, shared with Gen-Searcher's and GenEvolve's
Qwen-Image-Edit servers, so their clients and ours interoperate: a JSON body with
``image_urls`` (data URIs), ``prompt``, ``seed``, ``true_cfg_scale``, ``negative_prompt``,
``num_inference_steps``, ``guidance_scale``, ``num_images_per_prompt`` and optional
``width``/``height``; the reply ``{"success": true, "image": <base64 PNG>}`` or
``{"success": false, "message": ...}``. Unknown fields are ignored.

Design, for one big model per accelerator:
- One pipeline per process (run one process per GPU, ``CUDA_VISIBLE_DEVICES=i``, and
  spread requests with several ``--service-url``); it is loaded once, at startup.
- A bounded queue feeds a single worker that runs the pipeline in a thread, so the event
  loop stays free for ``/health`` and for refusing work: a full queue answers 503 with
  ``Retry-After`` at once instead of letting requests pile up.
- Each request has a deadline (504 after it); a render that outlives its deadline is
  stopped at its next denoising step, so it does not hold the worker.
- Admission comes first: a request beyond the running one plus ``max_queue`` waiting ones
  is answered 503 before its body is read or anything is decoded, so memory is bounded by
  the queue, not by the number of clients. At most ``decode_concurrency`` requests decode
  references at once, and the references of one request may hold at most
  ``max_total_reference_pixels`` in all (checked from the image headers, before decoding).
- Input limits are checked before any work (400 with a message naming the field and the
  limit); reference images are decoded with the guards used for downloads
  (:mod:`genevolve_graph.safety.imaging`). A client's mistake is a 4xx with the reason, never a 500.
- An optional bearer token (``--token`` / ``GENEVOLVE_SERVICE_TOKEN``) guards ``/generate``;
  ``/health`` stays open for load balancers.
- Out of accelerator memory frees memory and answers 500; the service lives on.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from genevolve_graph.generators.base import RenderError
from genevolve_graph.generators.diffusers_backend import (
    ConfigurationError,
    DiffusersConfig,
    DiffusersEngine,
    GenerationJob,
    RenderCancelled,
    RenderOutOfMemory,
)
from genevolve_graph.generators.references import flatten_to_rgb, output_size
from genevolve_graph.safety.imaging import UnsafeImageError, data_uri_bytes, decode_image_bytes, encode_png, probe_size

log = logging.getLogger(__name__)

UrlFetcher = Callable[[str], Awaitable[bytes]]
"""Fetches an http(s) reference URL with SSRF guards (the project's safe downloader)."""


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask for; anything beyond is a 400 with the limit in words."""

    max_reference_images: int = 4
    max_reference_bytes: int = 12 * 1024 * 1024
    max_reference_pixels: int = 40_000_000
    max_total_reference_pixels: int = 48_000_000
    """All references of one request together (about 4 × 12 MP): bounds a request's decoded memory."""
    max_reference_aspect: float = 20.0
    """Longest side over shortest side of a reference; beyond it the pipeline's resize breaks."""
    max_prompt_chars: int = 4000
    max_steps: int = 100
    min_side: int = 16
    max_side: int = 2048
    max_cfg_scale: float = 20.0
    max_seed: int = 2**63 - 1

    @property
    def max_body_bytes(self) -> int:
        """The largest request body that can hold a valid request (checked before parsing)."""
        per_image = math.ceil(self.max_reference_bytes / 3) * 4 + 256
        return self.max_reference_images * per_image + 8 * self.max_prompt_chars + 64 * 1024


@dataclass
class ServiceSettings:
    """How the service queues and times out work."""

    max_queue: int = 8
    request_timeout: float = 1800.0
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    url_fetcher: UrlFetcher | None = None
    """When set, http(s) entries of ``image_urls`` are fetched with it; otherwise refused."""
    default_long_side: int | None = None
    """Size of requests without width/height (peers send none): the first reference's
    aspect with this long side. ``None``: the pipeline's own default (about 1 MP)."""
    decode_concurrency: int = 2
    """Requests that may decode their references at the same time."""
    token: str | None = None
    """Bearer token ``/generate`` requires (``None``: no authentication)."""
    body_timeout: float = 60.0
    """Seconds an admitted request's body may take to arrive; then 408 and its slot is free
    again (a client trickling its body must not hold a slot for the request timeout)."""


class GenerateRequest(BaseModel):
    """The ``POST /generate`` body (DESIGN.md §4); extra fields from other clients are ignored."""

    model_config = ConfigDict(extra="ignore")

    image_urls: list[str] = Field(default_factory=list, description="Reference images as data URIs, in order.")
    prompt: str
    seed: int = 0
    true_cfg_scale: float = 4.0
    negative_prompt: str | None = " "
    num_inference_steps: int = 40
    guidance_scale: float | None = 1.0
    num_images_per_prompt: int = 1
    width: int | None = None
    height: int | None = None


class BadRequest(ValueError):
    """A request the service refuses (400); the message names the field."""


def check_request(request: GenerateRequest, limits: ServiceLimits) -> None:
    """Raise :class:`BadRequest` for the first limit a request breaks."""

    def between(name: str, value: float, low: float, high: float) -> None:
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low:g} and {high:g} (got {value:g})")

    for name in ("prompt", "negative_prompt"):
        text = getattr(request, name)
        if text is not None:
            _check_unicode(name, text)
    if not request.prompt.strip():
        raise BadRequest("prompt is empty")
    if len(request.prompt) > limits.max_prompt_chars:
        raise BadRequest(f"prompt is {len(request.prompt)} characters, more than the limit of {limits.max_prompt_chars}")
    if request.negative_prompt is not None and len(request.negative_prompt) > limits.max_prompt_chars:
        raise BadRequest(f"negative_prompt is longer than the limit of {limits.max_prompt_chars} characters")
    if len(request.image_urls) > limits.max_reference_images:
        raise BadRequest(f"image_urls has {len(request.image_urls)} images, more than the limit of {limits.max_reference_images}")
    between("num_inference_steps", request.num_inference_steps, 1, limits.max_steps)
    between("true_cfg_scale", request.true_cfg_scale, 1.0, limits.max_cfg_scale)
    if request.guidance_scale is not None:
        between("guidance_scale", request.guidance_scale, 0.0, limits.max_cfg_scale)
    if request.num_images_per_prompt != 1:
        raise BadRequest(f"num_images_per_prompt must be 1: the service returns one image (got {request.num_images_per_prompt})")
    between("seed", request.seed, 0, limits.max_seed)
    if (request.width is None) != (request.height is None):
        raise BadRequest("width and height go together: send both or neither")
    if request.width is not None and request.height is not None:
        between("width", request.width, limits.min_side, limits.max_side)
        between("height", request.height, limits.min_side, limits.max_side)


def _check_unicode(name: str, text: str) -> None:
    """JSON may carry lone surrogates (``"\\ud800"``) that no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(
            f"{name} is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start}; "
            "send UTF-8 text (pair or drop the surrogate)"
        ) from None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "message": message}, status_code=status, headers=headers)


@dataclass
class _Job:
    generation: GenerationJob
    future: asyncio.Future
    cancel: threading.Event = field(default_factory=threading.Event)


class RenderService:
    """The queue, the worker and the counters behind the HTTP routes."""

    def __init__(self, settings: ServiceSettings, *, engine: DiffusersEngine | None = None, config: DiffusersConfig | None = None) -> None:
        if engine is None and config is None:
            raise ValueError("RenderService needs a loaded engine or a DiffusersConfig to load one")
        if settings.max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {settings.max_queue}")
        self.settings = settings
        self.engine = engine
        self._config = config
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._running: _Job | None = None
        self.completed = 0
        self.failed = 0
        self.rejected = 0
        self._mean_seconds = 0.0
        self._last_seconds = 0.0
        self._admitted = 0
        self._decoding: asyncio.Semaphore | None = None

    # ---- lifecycle

    async def start(self) -> None:
        if self.engine is None:
            assert self._config is not None
            self.engine = await asyncio.to_thread(DiffusersEngine.load, self._config)
        # Room for every admitted request (the gate holds at most `capacity`): an admitted request
        # must not meet a full queue just because the worker has not yet taken the one before it.
        self._queue = asyncio.Queue(maxsize=self.capacity)
        self._decoding = asyncio.Semaphore(max(1, self.settings.decode_concurrency))
        self._worker = asyncio.create_task(self._work(), name="render-worker")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(RenderError("the render service is shutting down"))

    # ---- state

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def busy(self) -> bool:
        return self._running is not None

    @property
    def capacity(self) -> int:
        """Requests the service holds at once: the running one and ``max_queue`` waiting."""
        return self.settings.max_queue + 1

    def try_admit(self) -> bool:
        """Take a slot for a new request before anything of it is read; ``False``: full."""
        if self._admitted >= self.capacity:
            self.rejected += 1
            return False
        self._admitted += 1
        return True

    def release(self) -> None:
        self._admitted = max(0, self._admitted - 1)

    def busy_response(self) -> JSONResponse:
        seconds = self.retry_after()
        return _error(
            503,
            f"the render queue is full ({self.settings.max_queue} waiting); retry in about {seconds} s or use another endpoint",
            headers={"Retry-After": str(seconds)},
        )

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the mean render time times the work ahead."""
        mean = self._mean_seconds or 1.0
        return max(1, math.ceil(mean * (self.queued + 1)))

    def health(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "status": "ok" if engine is not None and self._worker is not None and not self._worker.done() else "starting",
            "pipeline": engine.description if engine else None,
            "device": str(getattr(engine.pipeline, "device", "")) if engine else None,
            "text_to_image": bool(engine and engine.has_text_to_image),
            "running": self.busy,
            "queued": self.queued,
            "max_queue": self.settings.max_queue,
            "completed": self.completed,
            "failed": self.failed,
            "rejected": self.rejected,
            "admitted": self._admitted,
            "mean_render_seconds": round(self._mean_seconds, 4),
            "last_render_seconds": round(self._last_seconds, 6),
        }

    # ---- work

    async def _work(self) -> None:
        assert self._queue is not None and self.engine is not None
        while True:
            job = await self._queue.get()
            if job.cancel.is_set() or job.future.done():
                continue
            self._running = job
            started = time.perf_counter()
            try:
                image = await asyncio.to_thread(self.engine.generate, job.generation, job.cancel)
            except Exception as exc:  # noqa: BLE001 - every failure goes back to its request
                self.failed += 1
                if not job.future.done():
                    job.future.set_exception(exc)
            else:
                elapsed = time.perf_counter() - started
                self._last_seconds = elapsed
                self._mean_seconds = elapsed if not self.completed else 0.8 * self._mean_seconds + 0.2 * elapsed
                self.completed += 1
                if not job.future.done():
                    job.future.set_result(image)
            finally:
                self._running = None

    async def _decode_references(self, urls: list[str]) -> list[Any]:
        """Decode every reference with the download guards (one worker-thread hop for all)."""
        fetched: dict[int, bytes] = {}
        for index, url in enumerate(urls):
            if url.startswith(("http://", "https://")):
                if self.settings.url_fetcher is None:
                    raise BadRequest(
                        f"image_urls[{index}]: this service does not fetch URLs; send the image inline as a data URI "
                        "(data:image/png;base64,...)"
                    )
                fetched[index] = await self.settings.url_fetcher(url)
            elif not url.startswith("data:"):
                raise BadRequest(f"image_urls[{index}]: expected a data URI (data:image/...;base64,...), got {url[:40]!r}")
        assert self._decoding is not None
        async with self._decoding:  # a bounded number of requests decode at once
            return await asyncio.to_thread(self._decode_all, urls, fetched)

    def _decode_all(self, urls: list[str], fetched: dict[int, bytes]) -> list[Any]:
        """Read every reference's bytes and header first (sizes, aspect, total pixels), and
        decode pixels only when the whole request is within the limits."""
        limits = self.settings.limits
        blobs: list[bytes] = []
        total = 0
        for index, url in enumerate(urls):
            try:
                data = fetched[index] if index in fetched else data_uri_bytes(url, max_bytes=limits.max_reference_bytes)
                width, height = probe_size(data)
            except UnsafeImageError as exc:
                raise BadRequest(f"image_urls[{index}]: {exc}") from None
            if width < 1 or height < 1 or max(width, height) / min(width, height) > limits.max_reference_aspect:
                raise BadRequest(
                    f"image_urls[{index}]: the reference is {width}x{height}, beyond the aspect-ratio limit of "
                    f"{limits.max_reference_aspect:g}:1; crop or pad it"
                )
            total += width * height
            if total > limits.max_total_reference_pixels:
                raise BadRequest(
                    f"image_urls: the references hold more than {limits.max_total_reference_pixels:,} pixels together "
                    f"(reached at image_urls[{index}], {width}x{height}); send fewer or smaller references"
                )
            blobs.append(data)
        images = []
        for index, data in enumerate(blobs):
            try:
                image = decode_image_bytes(data, max_pixels=limits.max_reference_pixels, max_bytes=limits.max_reference_bytes)
            except UnsafeImageError as exc:
                raise BadRequest(f"image_urls[{index}]: {exc}") from None
            images.append(flatten_to_rgb(image))
        return images

    async def generate(self, request: GenerateRequest) -> JSONResponse | dict[str, Any]:
        """Validate, queue and await one request; every outcome is a JSON answer."""
        deadline = time.monotonic() + self.settings.request_timeout
        assert self._queue is not None and self.engine is not None
        try:
            check_request(request, self.settings.limits)
        except BadRequest as exc:
            return _error(400, str(exc))
        if self._queue.full():
            return self._busy()
        try:
            images = await self._decode_references(request.image_urls)
        except BadRequest as exc:
            return _error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - a fetcher's failure is the client's URL's problem
            return _error(400, f"could not fetch a reference image: {exc}")
        if not images and not self.engine.has_text_to_image:
            return _error(
                400,
                f"image_urls is empty and this service has no text-to-image pipeline ({self.engine.description} needs "
                "at least one reference image); send a reference, or start the service with --t2i-pipeline",
            )
        width, height = request.width, request.height
        if width is None and self.settings.default_long_side:
            width, height = output_size(images[0].size if images else None, long_side=self.settings.default_long_side)
        job = _Job(
            GenerationJob(
                prompt=request.prompt,
                images=images,
                seed=request.seed,
                width=width,
                height=height,
                num_inference_steps=request.num_inference_steps,
                true_cfg_scale=request.true_cfg_scale,
                guidance_scale=request.guidance_scale,
                negative_prompt=request.negative_prompt,
                num_images_per_prompt=request.num_images_per_prompt,
            ),
            asyncio.get_running_loop().create_future(),
        )
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            return self._busy()
        try:
            image = await asyncio.wait_for(asyncio.shield(job.future), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            job.cancel.set()
            job.future.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it any more
            return _error(504, f"the render did not finish within the request timeout of {self.settings.request_timeout:g} s")
        except RenderCancelled as exc:
            return _error(504, str(exc))
        except ConfigurationError as exc:
            return _error(400, str(exc))
        except RenderOutOfMemory as exc:
            return _error(500, str(exc))
        except RenderError as exc:
            return _error(500, str(exc))
        except Exception as exc:  # noqa: BLE001 - the pipeline failed; the service goes on
            log.exception("render failed")
            return _error(500, f"render failed: {type(exc).__name__}: {exc}")
        png = await asyncio.to_thread(encode_png, image)
        return {"success": True, "image": base64.b64encode(png).decode("ascii")}

    def _busy(self) -> JSONResponse:
        self.rejected += 1
        return self.busy_response()


class GateMiddleware:
    """Authentication and admission before a ``POST /generate`` body is read.

    Plain ASGI in front of everything else: a request without the bearer token is a 401,
    and one that finds the service full is a 503 with ``Retry-After``, both answered
    without reading the body, so a flood costs neither memory nor decoding.
    """

    def __init__(self, app: Any, service: RenderService, token: str | None) -> None:
        self.app = app
        self.service = service
        self.token = token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/generate" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.token and not self._authorized(scope):
            response = _error(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                   "(the client reads GENEVOLVE_SERVICE_TOKEN)", headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        if not self.service.try_admit():
            await self.service.busy_response()(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.service.release()

    def _authorized(self, scope: dict[str, Any]) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        assert self.token is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())


def exposure_warning(host: str, token: str | None) -> str | None:
    """A warning when the service listens beyond loopback without a token, else ``None``."""
    if token:
        return None
    try:
        loopback = host in ("localhost",) or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"warning: the render service listens on {host} without authentication: anyone who can reach the port may "
            "fill its queue and its GPU; pass --token (or set GENEVOLVE_SERVICE_TOKEN) and give the client the same token")


class BodyLimitMiddleware:
    """Refuse request bodies larger than any valid request (413) before they are parsed, and
    bodies that do not arrive within ``body_timeout`` seconds (408).

    Plain ASGI, so the body is read once, counted as it arrives, and replayed to the app.
    It runs inside the admission gate: a request that times out here returns, and the gate
    releases its slot, so slow senders cannot keep real requests at 503.
    """

    def __init__(self, app: Any, max_bytes: int, body_timeout: float = 60.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    if len(body) > self.max_bytes:
                        await self._reject(scope, receive, send)
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            log.warning("request body incomplete after %g s (%d bytes): refused with 408", self.body_timeout, len(body))
            response = _error(408, f"the request body did not arrive within {self.body_timeout:g} s; send it at once, "
                                   "or ask the operator for a longer --body-timeout", headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = _error(413, f"request body is larger than the limit of {self.max_bytes:,} bytes")
        await response(scope, receive, send)


def create_app(
    settings: ServiceSettings | None = None,
    *,
    engine: DiffusersEngine | None = None,
    config: DiffusersConfig | None = None,
) -> FastAPI:
    """The FastAPI app. Pass a loaded ``engine``, or a ``config`` to load at startup (in the lifespan)."""
    settings = settings or ServiceSettings()
    service = RenderService(settings, engine=engine, config=config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's lifespan shape
        await service.start()
        log.info("render service ready: %s", service.health())
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="genevolve-graph render service", lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()) if part != 'body') or 'body'}: {error.get('msg')}"
            for error in exc.errors()
        )
        return _error(400, f"invalid request: {problems}")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

    @app.post("/generate", response_model=None)
    async def generate(request: GenerateRequest) -> JSONResponse | dict[str, Any]:
        return await service.generate(request)

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes, body_timeout=settings.body_timeout)
    app.add_middleware(GateMiddleware, service=service, token=settings.token)  # outermost: before the body is read
    return app
