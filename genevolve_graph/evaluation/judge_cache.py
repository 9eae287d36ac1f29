"""A durable cache of judge replies, so that re-running an evaluation costs no judge call.

A judgement is looked up by a key made of everything that decides what the judge sees and
how its answer is read: the benchmark, the item id, the SHA-256 of every image file's bytes
(in the order the judge sees them), the judge model, the rubric version (a hash of the
rubric text and of the message layout), the request text and the image settings. Change
any of them and the key changes, so a stale answer is never reused.

Only replies that were read successfully are stored (the raw text, parsed again on a hit),
so a failed judgement is always asked again. The store is one SQLite file; ``--judge-cache``
lets several runs share it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from genevolve_graph.evaluation.judge_client import JudgeClient, ask_parsed
from genevolve_graph.util.digest import file_sha256

T = TypeVar("T")

CACHE_FILE = "judge_cache.sqlite"


def rubric_version(rubric: str, layout: str) -> str:
    """A short hash of the rubric text and the message layout (``layout`` names the template)."""
    return hashlib.sha256(f"{layout}\n{rubric}".encode()).hexdigest()[:16]


def judgement_key(*, benchmark: str, item: str, images: Sequence[Path], judge_model: str, rubric_version: str,
                  prompt: str, view: str) -> str:
    """The cache key of one judgement (see the module docstring)."""
    parts = {
        "benchmark": benchmark, "item": item, "images": [file_sha256(p) for p in images],
        "judge_model": judge_model, "rubric_version": rubric_version,
        "prompt": hashlib.sha256(prompt.encode("utf-8")).hexdigest(), "view": view,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


class JudgeCache:
    """Raw judge replies by key, in one SQLite file; safe to share between the workers of a run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, benchmark TEXT, item TEXT, judge_model TEXT, "
            "rubric_version TEXT, raw TEXT NOT NULL, created_at TEXT DEFAULT CURRENT_TIMESTAMP)"
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT raw FROM judgements WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, raw: str, *, benchmark: str, item: str, judge_model: str, rubric_version: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO judgements (key, benchmark, item, judge_model, rubric_version, raw) VALUES (?, ?, ?, ?, ?, ?)",
                (key, benchmark, item, judge_model, rubric_version, raw),
            )

    def stats(self) -> dict[str, Any]:
        """What a summary records about the cache."""
        return {"path": str(self.path), "hits": self.hits, "misses": self.misses}

    def close(self) -> None:
        with self._lock:
            self._db.close()


async def ask_cached(
    client: JudgeClient,
    cache: JudgeCache | None,
    key_fields: dict[str, Any] | None,
    messages: list[dict],
    parse: Callable[[str], T],
    *,
    attempts: int = 3,
    what: str = "judge output",
) -> tuple[T, bool]:
    """``(parsed answer, came from the cache)``.

    With a cache and ``key_fields`` (the keyword arguments of :func:`judgement_key` other
    than ``judge_model``), a stored reply that still parses is used without calling the
    judge; otherwise the judge is asked (through :func:`ask_parsed`) and a readable reply is
    stored.
    """
    key = None
    if cache is not None and key_fields is not None:
        key = judgement_key(judge_model=client.model, **key_fields)
        raw = cache.get(key)
        if raw is not None:
            try:
                parsed = parse(raw)
            except ValueError:
                pass  # a stored reply the current parser cannot read: ask again
            else:
                cache.hits += 1
                return parsed, True
        cache.misses += 1
    seen: dict[str, str] = {}

    def keep(raw: str) -> T:
        parsed = parse(raw)
        seen["raw"] = raw
        return parsed

    parsed = await ask_parsed(client, messages, keep, attempts=attempts, what=what)
    if cache is not None and key is not None and key_fields is not None:
        cache.put(key, seen["raw"], benchmark=str(key_fields["benchmark"]), item=str(key_fields["item"]),
                  judge_model=client.model, rubric_version=str(key_fields["rubric_version"]))
    return parsed, False
