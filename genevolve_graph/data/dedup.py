"""Near-duplicate requests removed with sentence-transformers embeddings.

Requests are embedded (L2-normalised) and taken in order; one whose cosine similarity to
an already kept request reaches the threshold is dropped as a near-duplicate of it (the
kept request it is closest to; the earliest on a tie). The order is the cells' order, so
the result is the same on every run. The comparison runs in blocks of matrix products
(:func:`near_duplicates`), so 10^4-10^5 requests take seconds, not an all-pairs loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BLOCK = 1024
"""Texts embedded and compared at a time."""
KEPT_CHUNK = 1024
"""Kept vectors one matrix product takes at a time (a block's products stay at
``BLOCK x KEPT_CHUNK`` floats, 4 MiB, whatever the number of requests)."""


def load_embedder(name_or_path: str) -> Any:
    """A ``SentenceTransformer`` from a local folder or a model id (hub access follows
    ``HF_HUB_OFFLINE``)."""
    from genevolve_graph.util.quiet import quiet_progress_imports

    try:
        with quiet_progress_imports():
            from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("near-duplicate removal needs sentence-transformers: pip install 'genevolve-graph[data]'") from exc
    path = Path(name_or_path).expanduser()
    return SentenceTransformer(str(path) if path.exists() else name_or_path, device="cpu")


def near_duplicates(texts: Iterable[str], embedder: Any, threshold: float, *, block: int = BLOCK,
                    kept_chunk: int = KEPT_CHUNK) -> dict[int, tuple[int, float]]:
    """``{index: (index of the kept request it duplicates, cosine)}`` for every dropped text.

    The greedy rule, in blocks: the texts are read and embedded ``block`` at a time; a
    block is compared with every kept earlier text by matrix products over ``kept_chunk``
    kept vectors at a time, and with itself by one product, then walked in order. Only the
    pairs at or above the threshold are looked at one by one, so the work in Python grows
    with the number of texts and of their near-duplicates, never with all pairs, and memory
    holds the kept vectors and one ``block x kept_chunk`` product. Ties go to the earliest
    kept text, as a scan of the kept texts in order would give."""
    import numpy as np

    if block < 1 or kept_chunk < 1:
        raise ValueError("block and kept_chunk must be at least 1")
    dropped: dict[int, tuple[int, float]] = {}
    kept_vectors: np.ndarray | None = None
    kept_index = np.empty(0, dtype=np.int64)
    kept_count = 0
    start = 0
    iterator = iter(texts)
    while True:
        chunk = list(itertools.islice(iterator, block))
        if not chunk:
            break
        vectors = _embed(embedder, chunk)
        size = len(chunk)
        # 1. the best kept earlier text of each text of the block (first one on a tie)
        best_value = np.full(size, -np.inf, dtype=np.float32)
        best_at = np.full(size, -1, dtype=np.int64)
        for low in range(0, kept_count, kept_chunk):
            assert kept_vectors is not None
            sims = vectors @ kept_vectors[low:min(kept_count, low + kept_chunk)].T
            at = np.argmax(sims, axis=1)
            value = sims[np.arange(size), at]
            better = value > best_value
            best_value[better] = value[better]
            best_at[better] = kept_index[low + at[better]]
        # 2. within the block: the pairs (later, earlier) at or above the threshold
        inner = vectors @ vectors.T
        close = np.tril(inner >= threshold, k=-1)
        has_close = close.any(axis=1)
        keep = best_value < threshold
        for j in np.flatnonzero(has_close):
            candidates = np.flatnonzero(close[j, :j] & keep[:j])
            if candidates.size:
                pick = candidates[int(np.argmax(inner[j, candidates]))]
                if inner[j, pick] > best_value[j]:
                    best_value[j] = inner[j, pick]
                    best_at[j] = start + int(pick)
            keep[j] = best_value[j] < threshold
        for j in np.flatnonzero(~keep):
            dropped[start + int(j)] = (int(best_at[j]), round(float(best_value[j]), 4))
        new = vectors[keep]
        if new.shape[0]:
            if kept_vectors is None or kept_count + new.shape[0] > kept_vectors.shape[0]:
                capacity = max(2 * (kept_vectors.shape[0] if kept_vectors is not None else 0), kept_count + new.shape[0], block)
                grown = np.empty((capacity, vectors.shape[1]), dtype=np.float32)
                if kept_count:
                    grown[:kept_count] = kept_vectors[:kept_count]
                kept_vectors = grown
                kept_index = np.resize(kept_index, capacity)
            kept_vectors[kept_count:kept_count + new.shape[0]] = new
            kept_index[kept_count:kept_count + new.shape[0]] = start + np.flatnonzero(keep)
            kept_count += new.shape[0]
        start += size
    return dropped


def _embed(embedder: Any, texts: list[str]) -> Any:
    import numpy as np

    vectors = np.asarray(embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)
    return vectors.reshape(len(texts), -1)
