"""Fixtures of the Studio / embedding / notebook tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def subprocess_env(tmp_path) -> dict[str, str]:
    """An offline environment for child processes, with this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL", "GENEVOLVE_TRACE_DB")}
    env.update(
        HF_HUB_OFFLINE="1",
        LANGSMITH_TRACING="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        XDG_CACHE_HOME=str(tmp_path / "cache"),  # default output and trace locations stay in the test's folder
    )
    return env
