"""Stage 1, requests: every recipe cell expanded into natural requests, then de-duplicated.

Each cell is one item of the run folder ``DIR/requests/`` (its expansion appended to
``results.jsonl`` as soon as it arrives, so a resumed run asks only for the cells not yet
recorded). When every cell is recorded, near-duplicates are removed over all requests in
cell order and ``requests.jsonl`` is written: one row per request with its id
(``<cell id>.<nn>``), ``question``, ``hard_constraints``, the cell, and the benchmark fields
derived from the recipe (``eval_type``, ``category``, ``difficulty``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from genevolve_graph.data import batch_adapter as engine
from genevolve_graph.data.layout import DEDUP_FILE, DROPPED, INFRA, KEPT, REQUESTS_FILE
from genevolve_graph.data.recipes import Cell, Recipe

STAGE = "data-requests"


def cells_for(recipe: Recipe, max_samples: int | None) -> list[Cell]:
    """The cells to expand: all, or just enough for ``max_samples`` requests."""
    cells = recipe.all_cells()
    if max_samples is not None:
        cells = cells[: max(1, math.ceil(max_samples / recipe.requests_per_cell))]
    return cells


def request_row(recipe: Recipe, cell: Cell, index: int, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{cell.id}.{index:02d}",
        "question": entry["request"],
        "hard_constraints": entry["hard_constraints"],
        "eval_type": cell.eval_type,
        "category": recipe.category_of(cell),
        "difficulty": cell.difficulty,
        "cell": cell.model_dump(),
        "recipe": recipe.name,
    }


def make_worker(recipe: Recipe, expander: Any):
    from genevolve_graph.data.expander import ExpansionError

    async def worker(item: engine.Item) -> dict[str, Any]:
        cell = Cell(**item.data["cell"])
        record: dict[str, Any] = {"id": item.data["id"], "cell": item.data["cell"]}
        try:
            entries, problems = await expander.expand(recipe, cell, recipe.requests_per_cell)
        except ExpansionError as exc:
            return {**record, "requests_status": INFRA, "requests_reason": str(exc).split(":")[0], "requests_error": str(exc),
                    "requests": [], "malformed": []}
        rows = [request_row(recipe, cell, index, entry) for index, entry in enumerate(entries)]
        return {**record, "requests_status": KEPT, "requests_reason": None, "requests_error": None,
                "requests": rows, "malformed": problems}

    return worker


async def run_requests(recipe: Recipe, root: Path, *, expander: Any, embedder: Any, resume: bool | None,
                       progress: bool, max_samples: int | None, retry_infra: bool = False) -> engine.StageRun:
    cells = cells_for(recipe, max_samples)
    items = [engine.make_item(cell.id, position, {"cell": cell.model_dump()}) for position, cell in enumerate(cells)]
    settings = {"recipe": recipe.name, "recipe_sha": recipe.digest(), "requests_per_cell": recipe.requests_per_cell,
                "max_samples": max_samples}
    run = await engine.run_items(
        STAGE, items, make_worker(recipe, expander), out_dir=root / "requests", settings=settings,
        concurrency=recipe.expander.concurrency, resume=resume, progress=progress,
        # only infrastructure errors count as failed: a quality drop is an outcome (issue 24)
        is_failure=lambda r: r.get("requests_status") == INFRA, outcome_field="requests_status", error_field="requests_error",
        input_path=recipe.path, retry_infra=retry_infra,
    )
    if run.complete:
        write_requests(recipe, root, run.records, embedder)
    return run


def write_requests(recipe: Recipe, root: Path, cell_records: Sequence[dict[str, Any]], embedder: Any) -> dict[str, Any]:
    """De-duplicate the expanded requests and write ``requests.jsonl`` and ``dedup.json``.

    Two passes over the cell records (a :class:`~genevolve_graph.data.batch_adapter.StageRecords`
    reads them from the journal one at a time): the questions go to the blocked
    near-duplicate search, then the kept rows are written as they are read. Only the
    indices of dropped requests (and of those they duplicate) are held."""
    from genevolve_graph.data.dedup import near_duplicates

    dropped: dict[int, tuple[int, float]] = {}
    if recipe.dedup.enabled:
        dropped = near_duplicates((row["question"] for row in _request_rows(cell_records)), embedder, recipe.dedup.threshold)
    named = set(dropped) | {j for j, _ in dropped.values()}
    ids: dict[int, str] = {}
    counts = {"generated": 0, "kept": 0}

    def kept_lines() -> Iterator[str]:
        for index, row in enumerate(_request_rows(cell_records)):
            counts["generated"] += 1
            if index in named:
                ids[index] = row["id"]
            if index not in dropped:
                counts["kept"] += 1
                yield json.dumps(row, ensure_ascii=False) + "\n"

    folder = root / "requests"
    engine.write_lines_atomic(folder / REQUESTS_FILE, kept_lines())
    summary = {
        "threshold": recipe.dedup.threshold if recipe.dedup.enabled else None,
        "model": recipe.dedup.model if recipe.dedup.enabled else None,
        "generated": counts["generated"],
        "kept": counts["kept"],
        "dropped": [{"id": ids[i], "status": DROPPED, "reason": "near_duplicate", "duplicate_of": ids[j], "cosine": cos}
                    for i, (j, cos) in sorted(dropped.items())],
    }
    engine.write_json_atomic(folder / DEDUP_FILE, summary)
    return summary


def _request_rows(cell_records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for record in cell_records:
        yield from record.get("requests", [])


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """A whole JSONL file written through a temporary file and a rename, a line at a time."""
    engine.write_lines_atomic(path, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
