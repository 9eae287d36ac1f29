"""Default locations under the user's cache directory (platformdirs)."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_dir


def cache_root() -> Path:
    return Path(user_cache_dir("genevolve-graph"))


def default_output_dir() -> Path:
    return cache_root() / "renders"


def default_trace_db() -> Path:
    return cache_root() / "traces.sqlite"
