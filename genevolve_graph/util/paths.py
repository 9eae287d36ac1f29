"""Default locations under the user's cache directory (platformdirs)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from platformdirs import user_cache_dir


def cache_root() -> Path:
    return Path(user_cache_dir("genevolve-graph"))


def default_output_dir() -> Path:
    return cache_root() / "renders"


def default_trace_db() -> Path:
    return cache_root() / "traces.sqlite"


TRACE_DB_ENV = "GENEVOLVE_TRACE_DB"


def env_trace_db() -> Path | None:
    """``$GENEVOLVE_TRACE_DB`` (where Studio runs are recorded), or ``None`` when unset."""
    raw = os.environ.get(TRACE_DB_ENV, "").strip()
    if raw.startswith("sqlite:///"):  # accept the checkpoint-URL spelling too
        raw = raw[len("sqlite:///") :]
    return Path(raw).expanduser() if raw else None


def trace_databases() -> list[Path]:
    """The trace databases this user's runs record into (the default one and
    ``$GENEVOLVE_TRACE_DB``): files that no command may ever write as an output."""
    found = [default_trace_db()]
    named = env_trace_db()
    return found + ([named] if named is not None else [])


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(key: str) -> str:
    """A file name for a row id (or any name from data): the id itself when it is safe, else
    a cleaned form plus a short hash, so that two different ids never share a file."""
    cleaned = _UNSAFE.sub("_", key).strip("._") or "row"
    if cleaned == key and len(key) <= 120:
        return key
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned[:100]}-{digest}"
