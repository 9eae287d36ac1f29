"""Tavily (an LLM-oriented search API) for ``search`` and ``image_search``.

``POST {base}/search`` with ``{"query", "max_results", "include_images", ...}`` and the key
as a bearer token from ``TAVILY_API_KEY``. ``options["tavily_base_url"]`` or
``TAVILY_BASE_URL`` points at a compatible endpoint. Tavily's image results carry a URL and
an optional description but no page URL. This small HTTP client (rather than
``tavily-python``) shares the retries, timeouts and key scrubbing of the other backends and
adds no dependency.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from genevolve_graph.tools.base import BackendUnavailable, SearchHit
from genevolve_graph.tools.download import ImageCandidate
from genevolve_graph.tools.web_common import WebBackend
from genevolve_graph.tools.web_options import WebOptions
from genevolve_graph.net.webclient import api_client, call_json

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

DEFAULT_BASE_URL = "https://api.tavily.com"
KEY_ENV = "TAVILY_API_KEY"


def _status_hint(code: int) -> str | None:
    if code in (401, 403):
        return f"rejected the API key (HTTP {code}); check {KEY_ENV}"
    if code in (432, 433):
        return f"reports the plan's usage limit is exceeded (HTTP {code})"
    return None


class TavilyBackend(WebBackend):
    """Text and image search through the Tavily API."""

    name = "tavily"

    def __init__(self, options: WebOptions, *, base_url: str = "", search_depth: str = "basic", **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.base_url = (base_url or os.environ.get("TAVILY_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.search_depth = search_depth

    @property
    def endpoint(self) -> str:
        return self.base_url

    async def _call(self, payload: dict[str, Any], tool: str) -> dict[str, Any]:
        key = os.environ.get(KEY_ENV, "").strip()
        if not key:
            raise BackendUnavailable(f"{tool} unavailable: {KEY_ENV} is not set")
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        async with api_client(self.options.search_timeout) as client:
            data = await call_json(
                client, "POST", f"{self.base_url}/search", json={"search_depth": self.search_depth, **payload}, headers=headers,
                service=self.name, tool=tool, retry=self.retry, secrets=(key,), status_hint=_status_hint,
            )
        if not isinstance(data, dict):
            raise BackendUnavailable(f"{tool} unavailable: tavily returned an unexpected reply (not a JSON object)")
        return data

    async def _search(self, query: str, top_k: int) -> list[SearchHit]:
        data = await self._call({"query": query, "max_results": top_k}, "search")
        results = data.get("results", [])
        if not isinstance(results, list):
            raise BackendUnavailable("search unavailable: tavily returned an unexpected reply ('results' is not a list)")
        hits = [
            SearchHit(title=str(r.get("title") or r["url"]), url=str(r["url"]), snippet=str(r.get("content") or ""))
            for r in results
            if isinstance(r, dict) and r.get("url")
        ]
        return hits[:top_k]

    async def _image_candidates(self, query: str, n: int) -> list[ImageCandidate]:
        payload = {"query": query, "max_results": min(n, 20), "include_images": True, "include_image_descriptions": True}
        data = await self._call(payload, "image_search")
        images = data.get("images", [])
        if not isinstance(images, list):
            raise BackendUnavailable("image_search unavailable: tavily returned an unexpected reply ('images' is not a list)")
        candidates = []
        for item in images:
            if isinstance(item, str):
                candidates.append(ImageCandidate(url=item))
            elif isinstance(item, dict) and item.get("url"):
                candidates.append(ImageCandidate(url=str(item["url"]), title=str(item.get("description") or "")[:200]))
        return candidates[:n]


def from_context(ctx: "AgentContext") -> TavilyBackend:
    """Registry factory: ``tavily_base_url``, ``tavily_search_depth`` ('basic' or 'advanced')."""
    options = ctx.options or {}
    depth = str(options.get("tavily_search_depth") or "basic")
    if depth not in ("basic", "advanced", "fast", "ultra-fast"):
        raise ValueError(f"option 'tavily_search_depth' must be basic, advanced, fast or ultra-fast, got {depth!r}")
    return TavilyBackend(WebOptions.from_options(options), base_url=str(options.get("tavily_base_url") or ""), search_depth=depth)
