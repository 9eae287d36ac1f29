"""Near-duplicate requests removed with sentence-transformers embeddings.

Requests are embedded (L2-normalised) and taken in order; one whose cosine similarity to
an already kept request reaches the threshold is dropped as a near-duplicate of it. The
order is the cells' order, so the result is the same on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


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


def near_duplicates(texts: Sequence[str], embedder: Any, threshold: float) -> dict[int, tuple[int, float]]:
    """``{index: (index of the kept request it duplicates, cosine)}`` for every dropped text."""
    import numpy as np

    if not texts:
        return {}
    vectors = np.asarray(embedder.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)
    kept: list[int] = []
    dropped: dict[int, tuple[int, float]] = {}
    for index in range(len(texts)):
        if kept:
            sims = vectors[kept] @ vectors[index]
            best = int(np.argmax(sims))
            if float(sims[best]) >= threshold:
                dropped[index] = (kept[best], round(float(sims[best]), 4))
                continue
        kept.append(index)
    return dropped
