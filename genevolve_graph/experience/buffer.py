"""The experience buffer: a rolling store of Decision Guides with an embedding index.

* Capacity (default 500): when full, the oldest guide leaves.
* Index: one normalised embedding per guide, of its trigger + summary, from a
  sentence-transformers model (Qwen3-Embedding-0.6B by default, or any local path).
* Retrieval: top-1 by cosine similarity against the request; a hit counts only when the
  similarity reaches the gate (default 0.84), otherwise the teacher gets no guide.
* Persistence: a directory with ``guides.jsonl`` (one guide per line, oldest first, the
  source of truth), ``embeddings.npz`` and ``meta.json`` (informational). Each file is replaced
  atomically, but a crash can still land between two files, so the vectors carry, beside them,
  the id and a digest of the key text of the guide each row embeds, and the embedder's name: on
  load they are reused only when they match ``guides.jsonl`` row for row, otherwise the keys are
  embedded again. A buffer therefore never reloads with one guide's vector under another's text
  (a crash mid-save, another embedding model, an old buffer without ids). Each row also carries
  a checksum of its guide's id, key digest and vector bytes, so rows swapped or altered with the
  ids intact are found and only those rows embedded again; an unreadable (e.g. truncated)
  ``embeddings.npz`` means one re-embedding of every key, never a crash. Temporary files of a
  save that was killed (``.vectors-*.npz``, ``.guides.jsonl.*.tmp``, ``.meta.json.*.tmp``) are
  removed when the buffer is opened or saved again.
* Distributed training: the main process adds guides and ``export_entries`` /
  ``import_entries`` ship them (with their embeddings) to the other processes, so every
  process holds the same buffer without embedding anything twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genevolve_graph.experience.embedders import Embedder
from genevolve_graph.experience.guides import DecisionGuide
from genevolve_graph.util.file_modes import mkstemp, write_bytes_atomic

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 500
DEFAULT_GATE = 0.84
VECTORS_FILE = "embeddings.npz"
_TEMPORARY = re.compile(r"^(\.vectors-[0-9a-f]{16}\.npz|\.(guides\.jsonl|meta\.json)\.[0-9a-f]{16}\.tmp)$")
"""Names of the temporary files ``save`` writes before renaming them (left behind by a killed save)."""


@dataclass(frozen=True)
class Retrieval:
    """A guide found for a request, with its cosine similarity."""

    guide: DecisionGuide
    score: float


class ExperienceBuffer:
    """Rolling guides + their embeddings; top-1 cosine retrieval behind a gate."""

    def __init__(self, embedder: Embedder, *, capacity: int = DEFAULT_CAPACITY, gate: float = DEFAULT_GATE, path: str | Path | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be at least 1, got {capacity}")
        if not -1.0 <= gate <= 1.0:
            raise ValueError(f"the retrieval gate is a cosine similarity in [-1, 1], got {gate}")
        self.embedder = embedder
        self.capacity = capacity
        self.gate = gate
        self.path = Path(path) if path is not None else None
        self.guides: list[DecisionGuide] = []
        self.embeddings: np.ndarray | None = None
        if self.path is not None and (self.path / "guides.jsonl").exists():
            self._load(self.path)

    def __len__(self) -> int:
        return len(self.guides)

    # ------------------------------------------------------------------ writing

    def add(self, guides: DecisionGuide | Iterable[DecisionGuide]) -> list[DecisionGuide]:
        """Embed and store guides (oldest dropped beyond capacity). Returns those added."""
        batch = [guides] if isinstance(guides, DecisionGuide) else list(guides)
        if not batch:
            return []
        vectors = self.embedder.embed_keys([g.key_text() for g in batch])
        self._append(batch, vectors)
        return batch

    def _append(self, guides: list[DecisionGuide], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(guides):
            raise ValueError(f"{len(guides)} guides but {vectors.shape[0]} embeddings")
        self.guides.extend(guides)
        self.embeddings = vectors if self.embeddings is None else np.concatenate([self.embeddings, vectors])
        overflow = len(self.guides) - self.capacity
        if overflow > 0:
            self.guides = self.guides[overflow:]
            self.embeddings = self.embeddings[overflow:]

    def export_entries(self, guides: Sequence[DecisionGuide]) -> list[dict[str, Any]]:
        """Picklable records of guides already in the buffer (for broadcasting)."""
        index = {g.id: i for i, g in enumerate(self.guides)}
        out = []
        for guide in guides:
            i = index.get(guide.id)
            if i is not None:
                out.append({"guide": guide.model_dump(mode="json"), "embedding": self.embeddings[i].tolist()})
        return out

    def import_entries(self, entries: Sequence[dict[str, Any]]) -> None:
        """Append records made by ``export_entries`` on another process."""
        if not entries:
            return
        guides = [DecisionGuide.model_validate(e["guide"]) for e in entries]
        vectors = np.asarray([e["embedding"] for e in entries], dtype=np.float32)
        self._append(guides, vectors)

    # ------------------------------------------------------------------ reading

    def search(self, queries: Sequence[str]) -> list[Retrieval | None]:
        """Top-1 guide per query with its similarity, regardless of the gate."""
        if not queries:
            return []
        if not self.guides:
            return [None] * len(queries)
        q = self.embedder.embed_queries(list(queries))
        scores = q @ self.embeddings.T
        best = scores.argmax(axis=1)
        return [Retrieval(self.guides[int(j)], float(scores[i, j])) for i, j in enumerate(best)]

    def retrieve(self, queries: Sequence[str]) -> list[Retrieval | None]:
        """Top-1 guide per query when its similarity reaches the gate, else None."""
        return [hit if hit is not None and hit.score >= self.gate else None for hit in self.search(queries)]

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path | None = None) -> Path:
        """Write the buffer to a directory (default: the one it was opened with).

        Vectors first, then the guides, then ``meta.json``, each file replaced atomically. A crash
        between two of them leaves files that disagree; ``_load`` sees it (ids and key digests
        stored with the vectors) and embeds the keys again instead of pairing them wrongly.
        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("no path to save the experience buffer to; pass one")
        target.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        dim = 0 if self.embeddings is None else int(self.embeddings.shape[1])
        vectors = self.embeddings if self.embeddings is not None else np.zeros((0, 0), dtype=np.float32)
        fd, tmp = mkstemp(target, prefix=".vectors-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    vectors=vectors,
                    ids=np.asarray([g.id for g in self.guides], dtype=str),
                    keys=np.asarray([_key_digest(g) for g in self.guides], dtype=str),
                    checks=np.asarray([_row_check(g, vectors[i]) for i, g in enumerate(self.guides)], dtype=str),
                    embedder=np.asarray(self.embedder.name),
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target / VECTORS_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        lines = "".join(json.dumps(g.model_dump(mode="json"), ensure_ascii=False) + "\n" for g in self.guides)
        write_bytes_atomic(target / "guides.jsonl", lines.encode(), fsync=True)
        meta = {"embedder": self.embedder.name, "dim": dim, "capacity": self.capacity, "gate": self.gate, "count": len(self.guides)}
        write_bytes_atomic(target / "meta.json", json.dumps(meta, indent=2).encode(), fsync=True)
        (target / "embeddings.npy").unlink(missing_ok=True)  # the format before ids were kept beside the vectors
        return target

    def _load(self, path: Path) -> None:
        remove_stale_temporaries(path)
        guides = read_guides(path)
        if not guides:
            return
        vectors = self._stored_vectors(path / VECTORS_FILE, guides)
        if vectors is None:  # another embedding model, missing or mismatched vectors: embed the keys again
            vectors = self.embedder.embed_keys([g.key_text() for g in guides])
        self._append(guides, vectors)

    def _stored_vectors(self, file: Path, guides: list[DecisionGuide]) -> np.ndarray | None:
        """The saved vectors when they embed exactly these guides with this embedder, else None.
        Rows whose checksum fails (swapped or altered with the ids intact) are embedded again."""
        if not file.exists():
            return None
        try:
            with np.load(file, allow_pickle=False) as data:
                vectors, ids, keys, checks, name = data["vectors"], data["ids"], data["keys"], data["checks"], str(data["embedder"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            logger.warning("ignoring unreadable buffer vectors %s (%s: %s); embedding the guides again", file, type(exc).__name__, exc)
            return None
        if name != self.embedder.name:
            return None
        if ids.tolist() != [g.id for g in guides] or keys.tolist() != [_key_digest(g) for g in guides] or vectors.shape[0] != len(guides) \
                or checks.shape[0] != len(guides):
            logger.warning("buffer vectors in %s do not match guides.jsonl (interrupted save?); embedding the guides again", file)
            return None
        vectors = np.array(vectors, dtype=np.float32)
        bad = [i for i, g in enumerate(guides) if str(checks[i]) != _row_check(g, vectors[i])]
        if bad:
            logger.warning("%d buffer vector row(s) in %s fail their checksum (altered or swapped); embedding them again", len(bad), file)
            vectors[bad] = np.asarray(self.embedder.embed_keys([guides[i].key_text() for i in bad]), dtype=np.float32)
        return vectors

    def restore(self, path: str | Path, *, persist: bool = True) -> None:
        """Replace the guides with those saved in ``path`` (a checkpoint's copy of the buffer), and
        (``persist``) write them to this buffer's own folder, so that the folder matches the step
        resumed from. With several processes only the one that writes the buffer persists."""
        saved = ExperienceBuffer.load(path, self.embedder, capacity=self.capacity, gate=self.gate)
        self.guides, self.embeddings = saved.guides, saved.embeddings
        if persist and self.path is not None:
            self.save()

    @classmethod
    def load(cls, path: str | Path, embedder: Embedder, **kwargs: Any) -> "ExperienceBuffer":
        path = Path(path)
        if not (path / "guides.jsonl").exists():
            raise FileNotFoundError(f"no experience buffer at {path} (expected {path / 'guides.jsonl'})")
        return cls(embedder, path=path, **kwargs)



def read_guides(path: str | Path) -> list[DecisionGuide]:
    """The guides of the buffer folder ``path``; ``ValueError`` in one line naming the file
    and line of the first that is not a Decision Guide (torn, or not UTF-8)."""
    file = Path(path) / "guides.jsonl"
    guides = []
    with open(file, "rb") as handle:
        for n, raw in enumerate(handle, 1):
            if raw.strip():
                try:
                    guides.append(DecisionGuide.model_validate_json(raw))
                except ValueError as exc:  # pydantic's ValidationError, including undecodable bytes
                    first = " ".join(str(exc).split())[:200]
                    raise ValueError(f"{file} line {n} is not a Decision Guide ({first})") from None
    return guides


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed ``save`` left in ``folder``; returns them."""
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else []:
        if _TEMPORARY.match(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        logger.info("removed %d temporary file(s) of an interrupted buffer save in %s", len(removed), folder)
    return removed


def _row_check(guide: DecisionGuide, vector: np.ndarray) -> str:
    """A row's checksum: the guide's id and key digest with the exact bytes of its vector."""
    digest = hashlib.sha256(f"{guide.id}\n{_key_digest(guide)}\n".encode())
    digest.update(np.ascontiguousarray(vector, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def _key_digest(guide: DecisionGuide) -> str:
    """What a vector embeds: the guide's key text (a digest, to check a row belongs to its guide)."""
    return hashlib.sha256(guide.key_text().encode()).hexdigest()[:16]


