"""Fixtures of the data pipeline tests: the scripted endpoints, a tiny local embedder, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genevolve_graph.cli.app import _register_commands, app

ROOT = Path(__file__).resolve().parents[2]
_register_commands()
_runner = CliRunner()

pytest.importorskip("sentence_transformers", reason="near-duplicate removal needs the data extra (sentence-transformers)")


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory) -> Path:
    """A tiny deterministic sentence-transformers model built on the spot (no hub)."""
    from genevolve_graph.testing.scripted_data import build_embedder

    directory = tmp_path_factory.mktemp("embedder") / "words"
    build_embedder(directory)
    return directory


@pytest.fixture
def data_env(monkeypatch, embedder_dir):
    """Starts the scripted endpoints and points the bundled recipe at them."""
    from genevolve_graph.testing.scripted_data import data_server

    servers = []

    def start(latency: float = 0.0):
        server = data_server(latency=latency).__enter__()
        servers.append(server)
        monkeypatch.setenv("GENEVOLVE_DATA_BASE_URL", server.base_url)
        monkeypatch.setenv("GENEVOLVE_DATA_EMBEDDER", str(embedder_dir))
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def cli(*args: Any):
    return _runner.invoke(app, [str(a) for a in args])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def models_asked(server, model: str) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if r.body.get("model") == model]
