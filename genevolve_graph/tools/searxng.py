"""A SearXNG instance (self-hosted metasearch, no key) for ``search`` and ``image_search``.

``GET {url}/search?q=…&format=json&categories=general|images``. SearXNG answers JSON only
when its ``settings.yml`` lists ``json`` under ``search: formats:``; otherwise it replies
403 (or HTML), and the observation says how to fix that. The instance comes from
``options["searxng_url"]`` or ``SEARXNG_URL``.

Image results give ``img_src`` (the image), ``url`` (the page) and ``title``. With the
instance's image proxy on, ``img_src`` points back at the instance; a private instance is
then refused by the download policy unless its ``host:port`` is in ``allow_hosts``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from genevolve_graph.tools.base import BackendUnavailable, SearchHit
from genevolve_graph.tools.download import ImageCandidate
from genevolve_graph.tools.web_common import WebBackend
from genevolve_graph.tools.web_options import WebOptions
from genevolve_graph.net.webclient import api_client, call_json

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

JSON_HINT = "refused format=json; enable it by adding `json` under `search: formats:` in the instance's settings.yml"


def _status_hint(code: int) -> str | None:
    if code == 403:
        return f"{JSON_HINT} (HTTP 403)"
    return None


class SearxngBackend(WebBackend):
    """Text and image search through a SearXNG instance's JSON API."""

    name = "searxng"

    def __init__(self, options: WebOptions, *, url: str = "", safesearch: int = 1, language: str = "", **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.url = (url or os.environ.get("SEARXNG_URL") or "").rstrip("/")
        self.safesearch = safesearch
        self.language = language

    @property
    def endpoint(self) -> str:
        return self.url

    async def _query(self, query: str, category: str, tool: str) -> list[dict[str, Any]]:
        if not self.url:
            raise BackendUnavailable(f"{tool} unavailable: no SearXNG instance is configured; set options['searxng_url'] or SEARXNG_URL")
        params: dict[str, Any] = {"q": query, "format": "json", "categories": category, "safesearch": self.safesearch, "pageno": 1}
        if self.language:
            params["language"] = self.language
        async with api_client(self.options.search_timeout) as client:
            data = await call_json(
                client, "GET", f"{self.url}/search", params=params, headers={"Accept": "application/json"},
                service=self.name, tool=tool, retry=self.retry, status_hint=_status_hint, non_json_hint=JSON_HINT,
            )
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise BackendUnavailable(f"{tool} unavailable: searxng returned an unexpected reply (no 'results' list)")
        return [r for r in results if isinstance(r, dict)]

    async def _search(self, query: str, top_k: int) -> list[SearchHit]:
        results = await self._query(query, "general", "search")
        hits = [
            SearchHit(title=str(r.get("title") or r["url"]), url=str(r["url"]), snippet=str(r.get("content") or ""))
            for r in results
            if r.get("url")
        ]
        return hits[:top_k]

    async def _image_candidates(self, query: str, n: int) -> list[ImageCandidate]:
        results = await self._query(query, "images", "image_search")
        candidates = []
        for r in results:
            src = r.get("img_src")
            if not src or not isinstance(src, str):
                continue
            # img_src may be relative or protocol-relative (image proxy): resolve against the instance.
            candidates.append(ImageCandidate(url=urljoin(self.url + "/", src), title=str(r.get("title") or ""), page_url=str(r.get("url") or "")))
        return candidates[:n]


def from_context(ctx: "AgentContext") -> SearxngBackend:
    """Registry factory: ``searxng_url``, ``searxng_safesearch`` (0/1/2), ``searxng_language``."""
    options = ctx.options or {}
    try:
        safesearch = int(options.get("searxng_safesearch", 1))
    except (TypeError, ValueError):
        safesearch = -1
    if safesearch not in (0, 1, 2):
        raise ValueError(f"option 'searxng_safesearch' must be 0, 1 or 2, got {options.get('searxng_safesearch')!r}")
    return SearxngBackend(
        WebOptions.from_options(options),
        url=str(options.get("searxng_url") or ""),
        safesearch=safesearch,
        language=str(options.get("searxng_language") or ""),
    )
