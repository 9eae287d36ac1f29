"""Real HTTP servers on 127.0.0.1 that speak the search APIs, plus a (partly hostile) image
host: for the tests, the benchmark and offline demos of the web backends.

``search_app`` serves a Serper-compatible API under ``/serper`` (``POST /search``,
``POST /images``), a Tavily-compatible one under ``/tavily`` (``POST /search``) and a
SearXNG-compatible one under ``/searxng`` (``GET /search?format=json``). Queries script
failures: a query starting with ``flaky`` gets ``SearchState.flaky_failures`` 429 replies
before an answer, ``boom`` always gets 503, ``slow`` waits ``slow_delay`` seconds.

``image_host_app`` serves generated images in every allowed format and the hostile cases:
HTML or SVG dressed as images, a PNG declaring 10^10 pixels, truncated files, oversize
bodies (declared or streamed), a slow drip, redirects anywhere, error statuses.

Needs ``fastapi`` and ``uvicorn`` (the ``test`` extra); serve them with
``genevolve_graph.testing.server_thread.ServerThread``.
"""

# No "from __future__ import annotations": FastAPI must see the real classes of the
# route parameters, which are imported inside the app factories.

import asyncio
import io
import random
import re
import struct
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from PIL import Image

# --------------------------------------------------------------------------- image bytes


@lru_cache(maxsize=1024)
def image_bytes(name: str, fmt: str = "jpeg", size: tuple[int, int] = (96, 96)) -> bytes:
    """A deterministic noisy image for ``name`` (different names give different bytes)."""
    rng = random.Random(name)
    w, h = size
    base = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
    out = io.BytesIO()
    fmt = fmt.lower()
    if fmt == "gifanim":
        frames = [base] + [Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3)) for _ in range(2)]
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    elif fmt in ("jpeg", "jpg"):
        base.save(out, format="JPEG", quality=85)
    elif fmt == "png":
        base.save(out, format="PNG")
    elif fmt == "webp":
        base.save(out, format="WEBP", quality=80)
    elif fmt == "gif":
        base.save(out, format="GIF")
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- image host


def tracked_app(app: Any, state: Any, hits: Counter | None = None) -> Any:
    """``app`` wrapped to keep ``state.inflight``/``state.max_inflight`` (and count requests
    per path in ``hits``). A plain ASGI wrapper: HTTP middleware cost the fake servers more
    CPU than the requests they serve, and they share the benchmark machine's cores."""

    async def tracked(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if hits is not None:
            hits[scope["path"]] += 1
        state.inflight += 1
        state.max_inflight = max(state.max_inflight, state.inflight)
        try:
            await app(scope, receive, send)
        finally:
            state.inflight -= 1

    return tracked


@dataclass
class ImageHostState:
    """Request counts per path (``hits``) and a delay applied to every ``/img`` request."""

    delay: float = 0.0
    hits: Counter = field(default_factory=Counter)
    inflight: int = 0
    max_inflight: int = 0

    def reset(self) -> None:
        self.hits.clear()
        self.delay = 0.0
        self.inflight = self.max_inflight = 0


def image_host_app(state: ImageHostState) -> Any:
    from fastapi import FastAPI, Response
    from fastapi.responses import RedirectResponse, StreamingResponse

    app = FastAPI()

    @app.get("/img/{name}")
    async def img(name: str, fmt: str = "jpeg", w: int = 96, h: int = 96) -> Response:
        if state.delay:
            await asyncio.sleep(state.delay)
        data = image_bytes(name, fmt, (w, h))
        ctype = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}.get(fmt, "image/gif")
        return Response(data, media_type=ctype)

    @app.get("/octet/{name}")
    async def octet(name: str) -> Response:  # a real JPEG with an unhelpful Content-Type
        return Response(image_bytes(name), media_type="application/octet-stream")

    @app.get("/html-as-jpeg")
    async def html_as_jpeg() -> Response:
        return Response(b"<!DOCTYPE html><html><body>not an image</body></html>", media_type="image/jpeg")

    @app.get("/svg")
    async def svg() -> Response:
        return Response(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', media_type="image/svg+xml")

    @app.get("/svg-as-png")
    async def svg_as_png() -> Response:
        return Response(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', media_type="image/png")

    @app.get("/bomb.png")
    async def bomb(w: int = 100_000, h: int = 100_000) -> Response:
        return Response(png_declaring(w, h), media_type="image/png")

    @app.get("/truncated.jpg")
    async def truncated() -> Response:
        data = image_bytes("truncated", "jpeg", (256, 256))
        return Response(data[: len(data) * 2 // 3], media_type="image/jpeg")

    @app.get("/big")
    async def big(n: int = 1_000_000) -> Response:
        return Response(b"\xff" * n, media_type="image/jpeg")

    @app.get("/big-chunked")
    async def big_chunked(n: int = 1_000_000) -> StreamingResponse:
        async def chunks():  # type: ignore[no-untyped-def]
            sent = 0
            while sent < n:
                piece = min(65536, n - sent)
                sent += piece
                yield b"\xff" * piece

        return StreamingResponse(chunks(), media_type="image/jpeg")

    @app.get("/drip")
    async def drip(interval: float = 0.2, count: int = 200) -> StreamingResponse:
        data = image_bytes("drip")

        async def slowly():  # type: ignore[no-untyped-def]
            for i in range(min(count, len(data))):
                yield data[i : i + 1]
                await asyncio.sleep(interval)

        return StreamingResponse(slowly(), media_type="image/jpeg")

    @app.get("/redirect")
    async def redirect(to: str, code: int = 302) -> Response:
        return RedirectResponse(to, status_code=code)

    @app.get("/loop")
    async def loop() -> Response:
        return RedirectResponse("/loop", status_code=302)

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        return Response(b"nope", status_code=code, media_type="text/plain")

    @app.get("/text")
    async def text() -> Response:
        return Response(b"plain text", media_type="text/plain")

    @app.get("/_stats")
    async def stats() -> dict[str, int]:
        return dict(state.hits)

    return tracked_app(app, state, hits=state.hits)


# --------------------------------------------------------------------------- search APIs


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "q"


@dataclass
class SearchState:
    """What the search server answers and what it saw.

    ``image_base`` is the image host's URL for generated image results;
    ``image_results`` overrides the image URLs for a query (``{query: [url, ...]}``) and
    ``image_results_fn(query, n)`` computes them; ``calls`` counts requests per
    ``(api, query)``; ``max_inflight`` is the most requests handled at once.
    """

    serper_key: str = "serper-test-key"
    tavily_key: str = "tavily-test-key"
    image_base: str = ""
    image_results: dict[str, list[str]] = field(default_factory=dict)
    image_results_fn: Callable[[str, int], list[str]] | None = None
    searxng_json: bool = True
    flaky_failures: int = 2
    slow_delay: float = 0.2
    calls: Counter = field(default_factory=Counter)
    inflight: int = 0
    max_inflight: int = 0
    last_body: dict[str, Any] = field(default_factory=dict)

    def reset(self) -> None:
        self.image_results.clear()
        self.image_results_fn = None
        self.searxng_json = True
        self.flaky_failures = 2
        self.calls.clear()
        self.inflight = self.max_inflight = 0
        self.last_body = {}

    def image_urls(self, query: str, n: int) -> list[str]:
        if query in self.image_results:
            return self.image_results[query][:n]
        if self.image_results_fn is not None:
            return self.image_results_fn(query, n)
        return [f"{self.image_base}/img/{_slug(query)}-{i}" for i in range(n)]


def search_app(state: SearchState) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI()

    async def scripted(api: str, query: str) -> JSONResponse | None:
        """Count the call, apply the query's script; a response means: answer with it."""
        state.calls[(api, query)] += 1
        if query.startswith("slow"):
            await asyncio.sleep(state.slow_delay)
        if query.startswith("flaky") and state.calls[(api, query)] <= state.flaky_failures:
            return JSONResponse({"message": "Too many requests"}, status_code=429, headers={"Retry-After": "0"})
        if query.startswith("boom"):
            return JSONResponse({"message": "upstream exploded"}, status_code=503)
        return None

    @app.post("/serper/search")
    async def serper_search(request: Request) -> JSONResponse:
        if request.headers.get("x-api-key") != state.serper_key:
            return JSONResponse({"message": "Unauthorized."}, status_code=403)
        body = state.last_body = await request.json()
        query, num = str(body.get("q", "")), int(body.get("num", 10))
        if (early := await scripted("serper/search", query)) is not None:
            return early
        organic = [
            {"title": f"{query} — result {i}", "link": f"https://example.org/{_slug(query)}/{i}", "snippet": f"About {query}, fact {i}.", "position": i}
            for i in range(1, num + 1)
        ]
        return JSONResponse({"searchParameters": {"q": query, "num": num}, "organic": organic})

    @app.post("/serper/images")
    async def serper_images(request: Request) -> JSONResponse:
        if request.headers.get("x-api-key") != state.serper_key:
            return JSONResponse({"message": "Unauthorized."}, status_code=403)
        body = state.last_body = await request.json()
        query, num = str(body.get("q", "")), int(body.get("num", 10))
        if (early := await scripted("serper/images", query)) is not None:
            return early
        images = [
            {"title": f"{query} image {i}", "imageUrl": url, "thumbnailUrl": url, "link": f"https://example.org/page/{_slug(query)}/{i}", "source": "example.org", "position": i + 1}
            for i, url in enumerate(state.image_urls(query, num))
        ]
        return JSONResponse({"searchParameters": {"q": query, "type": "images"}, "images": images})

    @app.post("/tavily/search")
    async def tavily_search(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {state.tavily_key}":
            return JSONResponse({"detail": {"error": "Unauthorized: missing or invalid API key."}}, status_code=401)
        body = state.last_body = await request.json()
        query, num = str(body.get("query", "")), int(body.get("max_results", 5))
        if (early := await scripted("tavily", query)) is not None:
            return early
        results = [{"title": f"{query} — page {i}", "url": f"https://example.net/{_slug(query)}/{i}", "content": f"Tavily says {query} {i}.", "score": 0.9} for i in range(1, num + 1)]
        images: list[Any] = []
        if body.get("include_images"):
            urls = state.image_urls(query, num)
            # Tavily returns plain URLs, or {url, description} with descriptions on.
            images = [{"url": u, "description": f"{query} picture {i}"} if i % 2 == 0 else u for i, u in enumerate(urls)]
        return JSONResponse({"query": query, "results": results, "images": images, "response_time": 0.01})

    @app.get("/searxng/search")
    async def searxng_search(q: str = "", format: str = "html", categories: str = "general") -> Any:  # noqa: A002
        if format != "json" or not state.searxng_json:
            return HTMLResponse("<html><body>403 Forbidden</body></html>", status_code=403)
        if (early := await scripted(f"searxng/{categories}", q)) is not None:
            return early
        if categories == "images":
            results = [
                {"title": f"{q} picture {i}", "url": f"https://example.com/{_slug(q)}/{i}", "img_src": u, "thumbnail_src": u, "template": "images.html"}
                for i, u in enumerate(state.image_urls(q, 10))
            ]
        else:
            results = [{"title": f"{q} — entry {i}", "url": f"https://example.com/{_slug(q)}/{i}", "content": f"SearXNG on {q} {i}.", "engine": "wikipedia"} for i in range(1, 11)]
        return JSONResponse({"query": q, "number_of_results": len(results), "results": results, "answers": [], "suggestions": []})

    return tracked_app(app, state)
