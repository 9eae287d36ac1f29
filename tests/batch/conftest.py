"""Fixtures for the batch stages: input files, scripted trajectories, the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genevolve_graph.cli.batch import register
from genevolve_graph.cli.app import app

from ..scripts import answer, tool

register(app)
_runner = CliRunner()


def request_text(i: int | str) -> str:
    return f"batch request {i}: a lighthouse poster"


def trajectory(rounds: int = 3, *, tag: str = "x") -> list[str]:
    """``rounds - 1`` tool calls (skill, search, image search in turn), then an answer."""
    calls = [
        lambda k: tool("query_knowledge", skill_name="spatial_layout"),
        lambda k: tool("search", queries=[f"lighthouse fact {tag} {k}"], top_k=2),
        lambda k: tool("image_search", query="lighthouse at night", top_k=2),
    ]
    replies = [calls[k % 3](k) for k in range(rounds - 1)]
    refs = [("IMG_001", "the tower shape")] if rounds > 3 else []
    prompt = "A poster of the lighthouse from the first reference image at night." if refs else "A poster of a lighthouse at night."
    replies.append(answer(prompt, refs))
    return replies


def script_for(ids: list[Any], rounds: int = 3) -> dict[str, list[str]]:
    return {request_text(i): trajectory(rounds, tag=str(i)) for i in ids}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def bench_rows(ids: list[Any]) -> list[dict[str, Any]]:
    return [{"id": i, "question": request_text(i), "eval_type": "Knowledge-Anchored", "category": "architecture",
             "difficulty": "hard", "gt_image": f"images/{i}.png"} for i in ids]


def read_results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def turns_by_row(server, since: int = 0) -> dict[str, list[int]]:
    """Which turns (assistant messages so far) each conversation requested, in order."""
    out: dict[str, list[int]] = {}
    for record in server.requests[since:]:
        key = server.conversation_key(record.body)
        out.setdefault(key, []).append(server.turn(record.body))
    return out


@pytest.fixture
def cli():
    def invoke(*args: str):
        return _runner.invoke(app, [str(a) for a in args])

    return invoke


def policy_args(server) -> list[str]:
    return ["--policy", "openai", "--base-url", server.base_url, "--model", "scripted", "--retry-delay", "0.01", "--no-progress"]


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]
