"""Shared fixtures: offline environment, scripted policy server, checkpointers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LANGSMITH_TRACING", "false")
for _name in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL"):
    os.environ.pop(_name, None)

import contextlib
import uuid
from typing import AsyncIterator, Iterator

import pytest

from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.testing.scripted_openai import ScriptedChatServer

POSTGRES_URL = os.environ.get("GENEVOLVE_TEST_POSTGRES_URL", "")


def checkpoint_urls(tmp_path) -> dict[str, str]:
    urls = {"memory": "memory", "sqlite": f"sqlite:///{tmp_path / 'trace.sqlite'}"}
    if POSTGRES_URL:
        urls["postgres"] = POSTGRES_URL
    return urls


SAVER_KINDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=SAVER_KINDS)
def checkpoint_url(request, tmp_path) -> str:
    """Parametrized over memory, SQLite and Postgres."""
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("no PostgreSQL: set GENEVOLVE_TEST_POSTGRES_URL (scripts/start_test_postgres.sh starts one, as .ci/run does)")
    return checkpoint_urls(tmp_path)[request.param]


@pytest.fixture
def scripted_server() -> Iterator:
    """``scripted_server(script, **options)`` starts a ScriptedChatServer for the test."""
    stack = contextlib.ExitStack()

    def start(script, **options) -> ScriptedChatServer:
        return stack.enter_context(ScriptedChatServer(script, **options))

    with stack:
        yield start


@pytest.fixture
def thread_id() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def saver_for(url: str) -> AsyncIterator:
    async with open_checkpointer(url) as saver:
        yield saver
