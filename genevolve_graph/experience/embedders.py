"""Embedders of the experience buffer: the texts of guides and requests as unit vectors.

One embedder serves the folder buffer (``ExperienceBuffer``), a LangGraph store's index
(through :class:`EmbedderEmbeddings`, LangChain's ``Embeddings`` interface) and the trainer's
teacher retrieval, so a guide is found with the same vectors wherever it is stored. The
default model is Qwen3-Embedding-0.6B via sentence-transformers (DESIGN.md §5); any local
sentence-transformers folder works.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from langchain_core.embeddings import Embeddings

DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-Embedding-0.6B"


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors."""

    name: str

    def embed_keys(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceEmbedder:
    """A sentence-transformers model as the buffer's embedder.

    Keys and queries are embedded the same way by default (symmetric similarity between a
    request and a guide's summary of a request, which is what a 0.84 gate is meant for).
    ``query_prompt`` adds an instruction to queries only, for asymmetric setups.
    """

    def __init__(
        self,
        model: Any = DEFAULT_EMBEDDING_MODEL,
        *,
        device: str | None = None,
        query_prompt: str | None = None,
        batch_size: int = 32,
        name: str | None = None,
    ) -> None:
        if isinstance(model, str | os.PathLike):
            from genevolve_graph.util.quiet import quiet_progress_imports

            with quiet_progress_imports():
                from sentence_transformers import SentenceTransformer

            self.name = name or str(model)
            local = Path(model).exists()
            try:
                self.model = SentenceTransformer(str(model), device=device, local_files_only=local or _offline())
            except OSError as exc:
                raise OSError(
                    f"cannot load the embedding model {model!r} ({exc}); pass a local sentence-transformers "
                    "directory or download the model first (huggingface-cli download Qwen/Qwen3-Embedding-0.6B)"
                ) from exc
        else:
            self.model = model
            self.name = name or type(model).__name__
        self.query_prompt = query_prompt
        self.batch_size = batch_size

    def _encode(self, texts: Sequence[str], prompt: str | None) -> np.ndarray:
        vectors = self.model.encode(
            list(texts), prompt=prompt, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def embed_keys(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, None)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.query_prompt)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


class EmbedderEmbeddings(Embeddings):
    """The buffer's embedder (e.g. Qwen3-Embedding via sentence-transformers) as LangChain
    ``Embeddings``, so a store indexes guides with the very vectors the folder buffer uses."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_keys(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()
