"""Serper (Google results) for ``search`` and ``image_search``, as the paper's runtime used.

``POST {base}/search`` and ``POST {base}/images`` with ``{"q", "num"}`` and the key in the
``X-API-KEY`` header. The key comes from ``SERPER_API_KEY`` only and is read at call time,
so a run without it still works and the policy is told ``search unavailable:
SERPER_API_KEY is not set``. ``SERPER_BASE_URL`` (or ``options["serper_base_url"]``)
points at a Serper-compatible gateway. LangChain's wrapper hard-codes the host and sets no
timeout, hence this small client.
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

DEFAULT_BASE_URL = "https://google.serper.dev"
KEY_ENV = "SERPER_API_KEY"


def _status_hint(code: int) -> str | None:
    if code in (401, 403):
        return f"rejected the API key (HTTP {code}); check {KEY_ENV}"
    if code == 400:
        return "rejected the request (HTTP 400)"
    return None


class SerperBackend(WebBackend):
    """Text and image search through a Serper-compatible API."""

    name = "serper"

    def __init__(self, options: WebOptions, *, base_url: str = "", **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.base_url = (base_url or os.environ.get("SERPER_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")

    @property
    def endpoint(self) -> str:
        return self.base_url

    async def _post(self, path: str, payload: dict[str, Any], tool: str) -> dict[str, Any]:
        key = os.environ.get(KEY_ENV, "").strip()
        if not key:
            raise BackendUnavailable(f"{tool} unavailable: {KEY_ENV} is not set")
        async with api_client(self.options.search_timeout) as client:
            data = await call_json(
                client, "POST", f"{self.base_url}{path}", json=payload, headers={"X-API-KEY": key},
                service=self.name, tool=tool, retry=self.retry, secrets=(key,), status_hint=_status_hint,
            )
        if not isinstance(data, dict):
            raise BackendUnavailable(f"{tool} unavailable: {self.name} returned an unexpected reply (not a JSON object)")
        return data

    async def _search(self, query: str, top_k: int) -> list[SearchHit]:
        data = await self._post("/search", {"q": query, "num": top_k}, "search")
        organic = data.get("organic", [])
        if not isinstance(organic, list):
            raise BackendUnavailable("search unavailable: serper returned an unexpected reply ('organic' is not a list)")
        hits = []
        for item in organic:
            if isinstance(item, dict) and item.get("link"):
                hits.append(SearchHit(title=str(item.get("title") or item["link"]), url=str(item["link"]), snippet=str(item.get("snippet") or "")))
        return hits[:top_k]

    async def _image_candidates(self, query: str, n: int) -> list[ImageCandidate]:
        data = await self._post("/images", {"q": query, "num": n}, "image_search")
        images = data.get("images", [])
        if not isinstance(images, list):
            raise BackendUnavailable("image_search unavailable: serper returned an unexpected reply ('images' is not a list)")
        return [
            ImageCandidate(url=str(item["imageUrl"]), title=str(item.get("title") or ""), page_url=str(item.get("link") or ""))
            for item in images
            if isinstance(item, dict) and item.get("imageUrl")
        ]


def from_context(ctx: "AgentContext") -> SerperBackend:
    """Registry factory: options from ``ctx.options``, the key from the environment."""
    options = ctx.options or {}
    return SerperBackend(WebOptions.from_options(options), base_url=str(options.get("serper_base_url") or ""))
