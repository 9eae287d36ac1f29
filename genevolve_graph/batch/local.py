"""``LocalExecutor``: a stage's row function on the caller's event loop (the default executor)."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import MutableMapping
from typing import Any

from genevolve_graph.batch.engine import Sink, Stage, StageSession, StopController, run_stage
from genevolve_graph.batch.progress import StageProgress
from genevolve_graph.batch.rows import BatchRow


@dataclass
class LocalExecutor:
    """The stage's row function on the caller's event loop, ``concurrency`` rows at a time."""

    concurrency: int

    async def execute(self, stage: Stage, rows: list[BatchRow], *, sink: Sink, records: MutableMapping[str, dict[str, Any]],
                      controller: StopController, progress: StageProgress | None) -> StageSession:
        async with stage.open() as worker:
            return await run_stage(rows, worker, sink=sink, records=records, concurrency=self.concurrency,
                                   controller=controller, progress=progress, is_failure=stage.is_failure,
                                   failure=stage.failure)
