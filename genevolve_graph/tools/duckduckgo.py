"""DuckDuckGo and friends through the ``ddgs`` metasearch package: no key, no account.

``ddgs`` scrapes public search pages, so it is rate-limited and breaks when those pages
change; it suits trying the agent out, not batch runs. Its calls are blocking and run in a
worker thread; rate-limit and timeout errors are retried with the same backoff as the
other backends. Install with the ``web`` extra (``pip install genevolve-graph[web]``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from genevolve_graph.tools.base import BackendUnavailable, SearchHit
from genevolve_graph.tools.download import ImageCandidate
from genevolve_graph.tools.web_common import WebBackend
from genevolve_graph.tools.web_options import WebOptions

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext


def text_hits(rows: list[dict[str, Any]], top_k: int) -> list[SearchHit]:
    """``DDGS.text`` rows (``title, href, body``) as hits."""
    hits = [SearchHit(title=str(r.get("title") or r["href"]), url=str(r["href"]), snippet=str(r.get("body") or "")) for r in rows if r.get("href")]
    return hits[:top_k]


def image_candidates(rows: list[dict[str, Any]], n: int) -> list[ImageCandidate]:
    """``DDGS.images`` rows (``image, title, url``) as download candidates."""
    return [ImageCandidate(url=str(r["image"]), title=str(r.get("title") or ""), page_url=str(r.get("url") or "")) for r in rows if r.get("image")][:n]


class DuckDuckGoBackend(WebBackend):
    """Text and image search via ``ddgs.DDGS``."""

    name = "ddgs"

    def __init__(self, options: WebOptions, *, region: str = "us-en", safesearch: str = "moderate", backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.region, self.safesearch, self.backend = region, safesearch, backend

    @property
    def endpoint(self) -> str:
        return f"{self.backend}/{self.region}/{self.safesearch}"

    async def _run(self, method: str, query: str, n: int, tool: str) -> list[dict[str, Any]]:
        try:
            from ddgs import DDGS
            from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException
        except ImportError:
            raise BackendUnavailable(f"{tool} unavailable: the ddgs package is not installed (pip install 'genevolve-graph[web]')") from None

        def call() -> list[dict[str, Any]]:
            engine = DDGS(timeout=max(1, int(self.options.search_timeout)))
            return getattr(engine, method)(query, region=self.region, safesearch=self.safesearch, max_results=n, backend=self.backend)

        retry = self.retry
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(retry.retries + 1),
                wait=wait_exponential_jitter(initial=retry.initial_delay, max=retry.max_delay, jitter=retry.initial_delay),
                retry=retry_if_exception(lambda e: isinstance(e, (RatelimitException, TimeoutException))),
                reraise=True,
            ):
                with attempt:
                    return await asyncio.to_thread(call)
        except RatelimitException:
            raise BackendUnavailable(f"{tool} unavailable: ddgs is rate limited after {retry.retries + 1} attempt(s)") from None
        except TimeoutException:
            raise BackendUnavailable(f"{tool} unavailable: ddgs timed out after {retry.retries + 1} attempt(s)") from None
        except DDGSException as exc:
            if str(exc) == "No results found.":
                return []
            raise BackendUnavailable(f"{tool} unavailable: ddgs failed ({exc})") from None
        raise AssertionError("unreachable")

    async def _search(self, query: str, top_k: int) -> list[SearchHit]:
        return text_hits(await self._run("text", query, top_k, "search"), top_k)

    async def _image_candidates(self, query: str, n: int) -> list[ImageCandidate]:
        return image_candidates(await self._run("images", query, n, "image_search"), n)


def from_context(ctx: "AgentContext") -> DuckDuckGoBackend:
    """Registry factory: ``ddgs_region`` (us-en), ``ddgs_safesearch`` (on/moderate/off), ``ddgs_backend`` (auto)."""
    options = ctx.options or {}
    safesearch = str(options.get("ddgs_safesearch") or "moderate")
    if safesearch not in ("on", "moderate", "off"):
        raise ValueError(f"option 'ddgs_safesearch' must be on, moderate or off, got {safesearch!r}")
    return DuckDuckGoBackend(
        WebOptions.from_options(options),
        region=str(options.get("ddgs_region") or "us-en"),
        safesearch=safesearch,
        backend=str(options.get("ddgs_backend") or "auto"),
    )
