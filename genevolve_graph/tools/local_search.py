"""Offline text search: BM25 over a JSONL corpus of ``{"title", "url", "text"}`` lines."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from genevolve_graph.util.jsonl import iter_jsonl
from genevolve_graph.tools.base import SearchHit
from genevolve_graph.tools.bm25 import BM25Index

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus.jsonl"


class CorpusError(ValueError):
    """The corpus file cannot be used."""


def read_corpus(path: Path) -> list[dict[str, str]]:
    """Read and check a JSONL corpus; errors name the file, the line and the fix."""
    if not path.is_file():
        raise CorpusError(f"corpus {path} is not a readable file; pass --corpus with a JSONL file of title/url/text lines")
    docs: list[dict[str, str]] = []
    for number, row in iter_jsonl(path, "corpus", CorpusError):
        if not isinstance(row, dict) or not isinstance(row.get("text", row.get("snippet")), str):
            raise CorpusError(f"corpus {path} line {number}: needs a 'text' string (and 'title', 'url')")
        docs.append({"title": str(row.get("title", "")), "url": str(row.get("url", "")), "text": row.get("text", row.get("snippet", ""))})
    if not docs:
        raise CorpusError(f"corpus {path} holds no documents")
    return docs


class LocalSearch:
    """BM25 (bm25s) over a corpus; the index is built once per file and process."""

    name = "local"

    def __init__(self, corpus: str | Path = "") -> None:
        self.path = Path(corpus).expanduser() if corpus else DEFAULT_CORPUS
        self._loaded: tuple[list[dict[str, str]], BM25Index] | None = None

    def load(self) -> tuple[list[dict[str, str]], BM25Index]:
        if self._loaded is None:
            self._loaded = _index(str(self.path.resolve()))
        return self._loaded

    async def search(self, query: str, top_k: int) -> list[SearchHit]:
        docs, index = self._loaded or await asyncio.to_thread(self.load)
        return [
            SearchHit(title=docs[i]["title"], url=docs[i]["url"], snippet=_snippet(docs[i]["text"]))
            for i in index.top(query, top_k)
        ]


def _snippet(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


@lru_cache(maxsize=16)
def _index(path: str) -> tuple[list[dict[str, str]], BM25Index]:
    docs = read_corpus(Path(path))
    return docs, BM25Index([f"{d['title']} {d['text']}" for d in docs])


def from_context(ctx: "AgentContext") -> LocalSearch:
    return LocalSearch(ctx.corpus)
