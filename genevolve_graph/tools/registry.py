"""Which search backend a name means: the ``SEARCH`` and ``IMAGE_SEARCH`` registries of
``genevolve_graph.core.registry`` (built-ins plus packages registered under the entry-point groups
``genevolve_graph.search`` and ``genevolve_graph.image_search``). A factory takes the
``AgentContext`` and returns a backend object. Kept as a module so existing imports work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genevolve_graph.core.registry import IMAGE_SEARCH, SEARCH, UnknownName

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.tools.base import ImageSearchBackend, SearchBackend

SEARCH_BACKENDS = SEARCH
IMAGE_SEARCH_BACKENDS = IMAGE_SEARCH
UnknownBackend = UnknownName


def make_search_backend(ctx: "AgentContext") -> "SearchBackend":
    """A registered factory may return a backend, or a LangChain ``BaseTool``/``BaseRetriever``
    (adapted by ``LangChainSearch``)."""
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.tools import BaseTool

    backend = SEARCH.make(ctx)
    if isinstance(backend, (BaseTool, BaseRetriever)):
        from genevolve_graph.tools.langchain_adapter import LangChainSearch

        backend = LangChainSearch(backend)
    return backend


def make_image_search_backend(ctx: "AgentContext") -> "ImageSearchBackend":
    return IMAGE_SEARCH.make(ctx)
