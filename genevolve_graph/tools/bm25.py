"""A small BM25 index (bm25s) over texts, shared by the local text and image backends."""

from __future__ import annotations

from genevolve_graph.util.quiet import quiet_progress_imports

with quiet_progress_imports():  # every call below passes show_progress=False: no bar is ever drawn
    import bm25s


class BM25Index:
    """Ranks ``texts`` for a query; hits with no term in common are dropped."""

    def __init__(self, texts: list[str]) -> None:
        if not texts:
            raise ValueError("cannot index an empty collection")
        self.size = len(texts)
        self._retriever = bm25s.BM25()
        self._retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def top(self, query: str, k: int) -> list[int]:
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not any(len(ids) for ids in tokens.ids):
            return []
        k = max(1, min(k, self.size))
        indices, scores = self._retriever.retrieve(tokens, k=k, show_progress=False)
        return [int(i) for i, s in zip(indices[0], scores[0]) if s > 0]
