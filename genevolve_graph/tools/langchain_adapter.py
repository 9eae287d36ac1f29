"""Any LangChain ``BaseTool`` or ``BaseRetriever`` as the text-search backend.

LangChain already wraps dozens of search services and every vector store; this adapter
lets the agent's ``search`` tool use any of them. A retriever's ``Document``s become hits
(title and URL from the metadata, the text as snippet); a tool's output is normalised
whatever its shape: a list of result dicts (``title``/``name``, ``url``/``link``/``href``/
``source``, ``snippet``/``content``/``body``/``text``), a dict holding such a list, a JSON
string of either, or plain text (one hit).

Choose it with ``search="langchain"`` and ``options["langchain_search"]`` set to the tool or
retriever itself, or to an import path ``"package.module:attribute"`` naming one, or naming
a factory called with the ``AgentContext`` (or with nothing). See docs/search.md.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool

from genevolve_graph.core.registry import import_path
from genevolve_graph.tools.base import BackendUnavailable, SearchHit
from genevolve_graph.tools.runcache import RUN_CACHE, RunCache
from genevolve_graph.tools.web_common import clamp_top_k
from genevolve_graph.net.webclient import environment_secrets, redact

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

_TITLE = ("title", "name")
_URL = ("url", "link", "href", "source")
_SNIPPET = ("snippet", "content", "body", "text", "description", "page_content")
_LISTS = ("results", "organic", "items", "documents", "hits")
_TOP_K_ARGS = ("max_results", "top_k", "k", "num_results", "num")
MAX_SNIPPET = 1500


def _first(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = item.get(key)
        if value:
            return str(value)
    return ""


def _looks_like_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def hit_from_document(doc: Document) -> SearchHit:
    meta = doc.metadata or {}
    url = _first(meta, ("url", "link", "href")) or (str(meta.get("source")) if _looks_like_url(str(meta.get("source", ""))) else "")
    title = _first(meta, _TITLE) or str(meta.get("source") or "") or doc.page_content[:80]
    return SearchHit(title=title, url=url, snippet=doc.page_content[:MAX_SNIPPET])


def hits_from_output(output: Any, top_k: int) -> list[SearchHit]:
    """Search hits from whatever a LangChain tool or retriever returned."""
    if isinstance(output, Document):
        return [hit_from_document(output)]
    if isinstance(output, str):
        text = output.strip()
        if text[:1] in ("[", "{"):
            try:
                return hits_from_output(json.loads(text), top_k)
            except ValueError:
                pass
        return [SearchHit(title="search result", snippet=text[:MAX_SNIPPET])] if text else []
    if isinstance(output, Mapping):
        for key in _LISTS:
            if isinstance(output.get(key), list):
                return hits_from_output(output[key], top_k)
        hit = _hit_from_mapping(output)
        return [hit] if hit else []
    if isinstance(output, (list, tuple)):
        hits: list[SearchHit] = []
        for item in output:
            if isinstance(item, Document):
                hits.append(hit_from_document(item))
            elif isinstance(item, Mapping):
                hit = _hit_from_mapping(item)
                if hit:
                    hits.append(hit)
            elif isinstance(item, str) and item.strip():
                hits.append(SearchHit(title="search result", snippet=item.strip()[:MAX_SNIPPET]))
        return hits[:top_k]
    content = getattr(output, "content", None)  # a ToolMessage or similar
    if content is not None:
        return hits_from_output(content, top_k)
    return []


def _hit_from_mapping(item: Mapping[str, Any]) -> SearchHit | None:
    url, snippet = _first(item, _URL), _first(item, _SNIPPET)
    title = _first(item, _TITLE) or url
    if not (title or snippet):
        return None
    if url and not _looks_like_url(url):
        url = ""
    return SearchHit(title=title or "search result", url=url, snippet=snippet[:MAX_SNIPPET])


class LangChainSearch:
    """Adapts a LangChain tool or retriever to ``SearchBackend``."""

    def __init__(self, runnable: BaseTool | BaseRetriever, *, cache: RunCache | None = None, use_cache: bool = True) -> None:
        if not isinstance(runnable, (BaseTool, BaseRetriever)):
            raise TypeError(f"langchain_search must be a LangChain BaseTool or BaseRetriever, got {type(runnable).__name__}")
        self.runnable = runnable
        self.name = f"langchain:{getattr(runnable, 'name', None) or type(runnable).__name__}"
        self.cache = cache if cache is not None else RUN_CACHE
        self.use_cache = use_cache

    def _tool_input(self, query: str, top_k: int) -> dict[str, Any]:
        tool = self.runnable
        assert isinstance(tool, BaseTool)
        args = list(tool.args)
        if "query" in args:
            key = "query"
        elif len(args) == 1:
            key = args[0]
        else:
            raise BackendUnavailable(f"search unavailable: {self.name} takes {args}; it needs a 'query' argument or a single argument")
        payload: dict[str, Any] = {key: query}
        for name in _TOP_K_ARGS:
            if name in args:
                payload[name] = top_k
                break
        return payload

    async def _run(self, query: str, top_k: int) -> list[SearchHit]:
        try:
            if isinstance(self.runnable, BaseRetriever):
                output = await self.runnable.ainvoke(query)
            else:
                output = await self.runnable.ainvoke(self._tool_input(query, top_k))
        except BackendUnavailable:
            raise
        except Exception as exc:  # a third-party tool can fail in any way; the run goes on
            message = f"search unavailable: {self.name} failed ({type(exc).__name__}: {exc})"
            raise BackendUnavailable(redact(message, environment_secrets())) from None
        return hits_from_output(output, top_k)[:top_k]

    async def search(self, query: str, top_k: int = 5) -> list[SearchHit]:
        query, top_k = (query or "").strip(), clamp_top_k(top_k)
        if not query:
            return []
        if not self.use_cache:
            return await self._run(query, top_k)
        key = ("search", self.name, id(self.runnable), query, top_k)
        hits = await self.cache.get_or_compute(key, lambda: self._run(query, top_k))
        return [hit.model_copy() for hit in hits]


def resolve(spec: Any, ctx: "AgentContext | None" = None) -> BaseTool | BaseRetriever:
    """The tool or retriever named by ``spec`` (an object or a ``"module:attr"`` path)."""
    if isinstance(spec, (BaseTool, BaseRetriever)):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            "option 'langchain_search' must be a LangChain tool or retriever, or an import path 'package.module:attribute'; "
            f"got {spec!r}"
        )
    try:
        target: Any = import_path(spec)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"option 'langchain_search' = {spec!r} cannot be imported ({exc})") from None
    if inspect.isclass(target):
        target = target()
    elif callable(target) and not isinstance(target, (BaseTool, BaseRetriever)):
        params = inspect.signature(target).parameters
        target = target(ctx) if len(params) >= 1 else target()
    if not isinstance(target, (BaseTool, BaseRetriever)):
        raise ValueError(f"option 'langchain_search' = {spec!r} gave {type(target).__name__}, not a LangChain BaseTool or BaseRetriever")
    return target


def from_context(ctx: "AgentContext") -> LangChainSearch:
    """Registry factory: ``options["langchain_search"]`` names the tool or retriever."""
    options = ctx.options or {}
    spec = options.get("langchain_search")
    if spec is None:
        raise ValueError("search backend 'langchain' needs options['langchain_search']: a tool/retriever or 'package.module:attribute'")
    return LangChainSearch(resolve(spec, ctx), use_cache=bool(options.get("search_cache", True)))
