"""Which search backend a name means.

Backends are named by ``"module:factory"`` strings and imported only when chosen, so an
optional backend's dependencies are needed only by those who use it. A factory takes the
``AgentContext`` and returns a backend object.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genevolve_graph.context import AgentContext
    from genevolve_graph.tools.base import ImageSearchBackend, SearchBackend

SEARCH_BACKENDS: dict[str, str] = {
    "local": "genevolve_graph.tools.local_search:from_context",
    "serper": "genevolve_graph.tools.serper:from_context",
    "searxng": "genevolve_graph.tools.searxng:from_context",
    "tavily": "genevolve_graph.tools.tavily:from_context",
    "ddgs": "genevolve_graph.tools.duckduckgo:from_context",
    "langchain": "genevolve_graph.tools.langchain_adapter:from_context",
}
IMAGE_SEARCH_BACKENDS: dict[str, str] = {
    "local": "genevolve_graph.tools.local_images:from_context",
    "serper": "genevolve_graph.tools.serper:from_context",
    "searxng": "genevolve_graph.tools.searxng:from_context",
    "tavily": "genevolve_graph.tools.tavily:from_context",
    "ddgs": "genevolve_graph.tools.duckduckgo:from_context",
}


class UnknownBackend(ValueError):
    """A backend name that is not registered."""


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def make_search_backend(ctx: "AgentContext") -> "SearchBackend":
    if ctx.search not in SEARCH_BACKENDS:
        raise UnknownBackend(f"unknown search backend {ctx.search!r}; choose one of {', '.join(sorted(SEARCH_BACKENDS))}")
    return _load(SEARCH_BACKENDS[ctx.search])(ctx)


def make_image_search_backend(ctx: "AgentContext") -> "ImageSearchBackend":
    if ctx.image_search not in IMAGE_SEARCH_BACKENDS:
        raise UnknownBackend(
            f"unknown image search backend {ctx.image_search!r}; choose one of {', '.join(sorted(IMAGE_SEARCH_BACKENDS))}"
        )
    return _load(IMAGE_SEARCH_BACKENDS[ctx.image_search])(ctx)
