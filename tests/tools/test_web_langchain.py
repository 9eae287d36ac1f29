"""Any LangChain tool or retriever as the text-search backend."""

from __future__ import annotations

import json
import textwrap

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import StructuredTool, tool

from genevolve_graph.core.context import AgentContext
from genevolve_graph.tools.base import BackendUnavailable, SearchBackend
from genevolve_graph.tools.langchain_adapter import LangChainSearch, hits_from_output, resolve
from genevolve_graph.tools.registry import make_search_backend
from genevolve_graph.tools.runcache import RunCache

CALLS: list[dict] = []


@tool
def encyclopedia(query: str, max_results: int = 5) -> list[dict]:
    """Look a topic up in a tiny encyclopedia."""
    CALLS.append({"query": query, "max_results": max_results})
    rows = [
        {"title": "Okapi", "link": "https://en.example.org/Okapi", "snippet": "A forest giraffid of the Congo, with striped legs."},
        {"title": "Giraffe", "link": "https://en.example.org/Giraffe", "snippet": "The tallest living land animal."},
        {"title": "Zebra", "link": "https://en.example.org/Zebra", "snippet": "Striped equids of Africa."},
    ]
    return [r for r in rows if any(w in (r["title"] + r["snippet"]).lower() for w in query.lower().split())][:max_results]


class KeywordRetriever(BaseRetriever):
    """A real (if simple) retriever: documents that share a word with the query."""

    documents: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        words = set(query.lower().split())
        return [d for d in self.documents if words & set(d.page_content.lower().split())]

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        return self._get_relevant_documents(query, run_manager=run_manager.get_sync())


DOCS = [
    Document("The okapi has striped legs like a zebra", metadata={"title": "Okapi facts", "source": "https://zoo.example.org/okapi"}),
    Document("Lighthouses use fresnel lenses", metadata={"source": "notes/lighthouse.txt"}),
]


async def test_a_tool_serves_as_search_backend() -> None:
    CALLS.clear()
    backend = LangChainSearch(encyclopedia, cache=RunCache())
    assert isinstance(backend, SearchBackend)
    hits = await backend.search("striped", 2)
    assert [(h.title, h.url) for h in hits] == [("Okapi", "https://en.example.org/Okapi"), ("Zebra", "https://en.example.org/Zebra")]
    assert CALLS == [{"query": "striped", "max_results": 2}]  # top_k reached the tool's own argument
    await backend.search("striped", 2)
    assert len(CALLS) == 1  # the run cache answered the repeat


async def test_a_retriever_serves_as_search_backend() -> None:
    backend = LangChainSearch(KeywordRetriever(documents=DOCS), use_cache=False)
    hits = await backend.search("zebra okapi", 5)
    assert len(hits) == 1
    assert (hits[0].title, hits[0].url) == ("Okapi facts", "https://zoo.example.org/okapi")
    assert hits[0].snippet == DOCS[0].page_content
    local = await backend.search("fresnel", 5)
    assert (local[0].title, local[0].url) == ("notes/lighthouse.txt", "")  # a file path is not a URL


async def test_tool_failures_become_backend_unavailable_without_secrets(monkeypatch) -> None:
    monkeypatch.setenv("EXAMPLE_API_KEY", "ex-SECRET-99887766")

    def broken(query: str) -> str:
        raise RuntimeError("GET https://api.example.com/?key=ex-SECRET-99887766 returned 500")

    backend = LangChainSearch(StructuredTool.from_function(broken, name="broken", description="fails"), use_cache=False)
    with pytest.raises(BackendUnavailable) as info:
        await backend.search("x", 3)
    assert str(info.value) == "search unavailable: langchain:broken failed (RuntimeError: GET https://api.example.com/?key=*** returned 500)"


def test_outputs_of_many_shapes_become_hits() -> None:
    serper_like = {"organic": [{"title": "A", "link": "https://a.example", "snippet": "aa"}]}
    assert hits_from_output(serper_like, 5)[0].url == "https://a.example"
    assert hits_from_output(json.dumps(serper_like), 5)[0].title == "A"
    tavily_like = {"results": [{"title": "B", "url": "https://b.example", "content": "bb"}]}
    assert hits_from_output(tavily_like, 5)[0].snippet == "bb"
    ddg_like = [{"title": "C", "href": "https://c.example", "body": "cc"}]
    assert hits_from_output(ddg_like, 5)[0].url == "https://c.example"
    text = hits_from_output("Paris is the capital of France.", 5)
    assert len(text) == 1 and text[0].snippet == "Paris is the capital of France."
    assert hits_from_output("", 5) == [] and hits_from_output(None, 5) == []
    assert len(hits_from_output([{"title": str(i)} for i in range(9)], 3)) == 3


def test_import_path_and_factory_resolution(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_search.py").write_text(
        textwrap.dedent(
            '''
            from langchain_core.tools import tool

            @tool
            def lookup(query: str) -> str:
                """Answers anything."""
                return "an answer to " + query

            def make(ctx):
                assert ctx.search == "langchain"
                return lookup
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve("my_search:lookup").name == "lookup"
    backend = make_search_backend(AgentContext(search="langchain", options={"langchain_search": "my_search:make"}))
    assert isinstance(backend, LangChainSearch) and backend.name == "langchain:lookup"
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve("my_search:nothing_here")
    with pytest.raises(ValueError, match="needs options\\['langchain_search'\\]"):
        make_search_backend(AgentContext(search="langchain"))
    with pytest.raises(ValueError, match="must be a LangChain tool or retriever, or an import path"):
        resolve(42)


async def test_object_in_options_works_too() -> None:
    backend = make_search_backend(AgentContext(search="langchain", options={"langchain_search": KeywordRetriever(documents=DOCS)}))
    assert (await backend.search("lighthouses", 1))[0].snippet.startswith("Lighthouses")
