"""What every web search backend shares: options, the per-run cache, the downloader, and
running several queries at once.

A backend subclass implements ``_search(query, top_k)`` and/or
``_image_candidates(query, n)``; this base adds input clamping, the run cache keyed by
(backend, endpoint, query, top_k), and the safe download of image candidates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from genevolve_graph.tools.base import BackendUnavailable, ImageSearchOutcome, SearchBackend, SearchHit
from genevolve_graph.tools.download import ImageCandidate, ImageDownloader, shared_downloader
from genevolve_graph.tools.runcache import RUN_CACHE, RunCache
from genevolve_graph.tools.web_options import WebOptions
from genevolve_graph.net.webclient import RetrySettings

MAX_TOP_K = 20
"""Upper bound on results per query: more only lengthens the observation."""


def clamp_top_k(top_k: object, default: int = 5) -> int:
    """A usable ``top_k`` from whatever the policy wrote (None, "3", 50, -1 ...)."""
    try:
        value = int(top_k)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        value = default
    return max(1, min(MAX_TOP_K, value))


class WebBackend:
    """Base of the web backends (Serper, SearXNG, Tavily, DuckDuckGo)."""

    name = "web"

    def __init__(self, options: WebOptions, *, downloader: ImageDownloader | None = None, cache: RunCache | None = None) -> None:
        self.options = options
        self._downloader = downloader
        self.cache = cache if cache is not None else RUN_CACHE

    @property
    def endpoint(self) -> str:
        """Identifies the service instance in cache keys (results differ between instances)."""
        return ""

    @property
    def downloader(self) -> ImageDownloader:
        if self._downloader is None:
            self._downloader = shared_downloader(self.options)
        return self._downloader

    @property
    def retry(self) -> RetrySettings:
        o = self.options
        return RetrySettings(retries=o.search_retries, initial_delay=o.search_retry_initial_delay, max_delay=o.search_retry_max_delay)

    async def search(self, query: str, top_k: int = 5) -> list[SearchHit]:
        """Text search for one query (cached for the run)."""
        query, top_k = (query or "").strip(), clamp_top_k(top_k)
        if not query:
            return []
        hits = await self._cached("search", query, top_k, lambda: self._search(query, top_k))
        return [hit.model_copy() for hit in hits]

    async def search_images(self, query: str, top_k: int = 5) -> ImageSearchOutcome:
        """Image search for one query; hits are safely downloaded local files."""
        query, top_k = (query or "").strip(), clamp_top_k(top_k)
        if not query:
            return ImageSearchOutcome(hits=[])
        outcome = await self._cached("image_search", query, top_k, lambda: self._search_images(query, top_k))
        return outcome.model_copy(deep=True)

    async def _cached(self, tool: str, query: str, top_k: int, compute):  # type: ignore[no-untyped-def]
        if not self.options.search_cache:
            return await compute()
        key: tuple = (tool, self.name, self.endpoint, query, top_k)
        if tool == "image_search":  # what is accepted, and where it lands, depends on these
            o = self.options
            key += (str(o.image_download_dir), o.allow_hosts, o.download_ports, o.download_max_bytes, o.download_max_pixels, o.image_candidates)
        return await self.cache.get_or_compute(key, compute)

    async def _search_images(self, query: str, top_k: int) -> ImageSearchOutcome:
        wanted = self.options.image_candidates or 2 * top_k
        candidates = await self._image_candidates(query, max(top_k, wanted))
        return await self.downloader.fetch_ranked(candidates, top_k)

    async def _search(self, query: str, top_k: int) -> list[SearchHit]:
        raise BackendUnavailable(f"search unavailable: the {self.name} backend has no text search")

    async def _image_candidates(self, query: str, n: int) -> list[ImageCandidate]:
        raise BackendUnavailable(f"image_search unavailable: the {self.name} backend has no image search")


async def search_many(backend: SearchBackend, queries: Sequence[str], top_k: int) -> list[list[SearchHit] | BackendUnavailable]:
    """Run a multi-query ``search`` concurrently, one result (or failure) per query, in order.

    A ``BackendUnavailable`` for one query is returned in its place so the tools node can
    show it in that query's block while the other queries still answer.
    """

    async def one(query: str) -> list[SearchHit] | BackendUnavailable:
        try:
            return await backend.search(query, top_k)
        except BackendUnavailable as exc:
            return exc

    return list(await asyncio.gather(*(one(q) for q in queries)))
