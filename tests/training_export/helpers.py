"""Recording helpers shared by the export tests."""

from __future__ import annotations

from typing import Any

from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.agent.runner import RunResult, run_with_saver


async def record(url: str, ctx, runs: list[tuple[str, str]], **metadata: Any) -> list[RunResult]:
    """Run ``(thread_id, request)`` pairs one after another into the checkpointer at ``url``."""
    results = []
    async with open_checkpointer(url) as saver:
        for thread_id, request in runs:
            results.append(await run_with_saver(request, ctx, saver, thread_id=thread_id, **metadata))
    return results
