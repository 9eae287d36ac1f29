"""RL rows (GenEvolve-Data-RL style) as the TRL dataset the trainer reads.

A row needs the image request (``prompt``, or ``question`` as in GenEvolve-Bench) and its
ground-truth image (``gt_image``, relative to the data set's root). The dataset gets:

* ``prompt``: the policy's first two messages (system prompt with the tool block, request)
  exactly as the agent graph builds them for the same agent settings;
* ``gt_image``: an absolute path (checked to exist, so a bad path fails at start, not as
  missing rewards hours later);
* ``id``: the row's id (or its line number).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genevolve_graph.context import AgentContext
from genevolve_graph.jsonl import iter_jsonl
from genevolve_graph.training.rollout import request_prompt


class DataError(ValueError):
    """An RL data file that cannot be used; the message names the file, the line and the fix."""


def read_rows(path: Path, root: Path | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Checked rows: ``{"id", "request", "gt_image"}`` with absolute image paths."""
    if not path.is_file():
        raise DataError(f"RL data {path} is not a readable file; pass data.path with a JSONL of prompt/gt_image rows")
    root = root or path.parent
    rows: list[dict[str, Any]] = []
    for number, row in iter_jsonl(path, "RL data", DataError):
        request = row.get("prompt", row.get("question")) if isinstance(row, dict) else None
        if not isinstance(request, str) or not request.strip():
            raise DataError(f"RL data {path} line {number}: needs the image request as a 'prompt' (or 'question') string")
        gt = row.get("gt_image")
        if not isinstance(gt, str) or not gt:
            raise DataError(f"RL data {path} line {number}: needs 'gt_image', the ground-truth image path")
        gt_path = Path(gt) if Path(gt).is_absolute() else root / gt
        if not gt_path.is_file():
            raise DataError(f"RL data {path} line {number}: gt_image {gt_path} does not exist; set data.root to the data set's folder")
        rows.append({"id": str(row.get("id", number)), "request": request.strip(), "gt_image": str(gt_path.resolve())})
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"RL data {path} holds no rows")
    return rows


def build_dataset(rows: list[dict[str, Any]], ctx: AgentContext):
    """A ``datasets.Dataset`` with ``prompt`` (chat messages), ``gt_image`` and ``id``."""
    from datasets import Dataset

    return Dataset.from_list(
        [{"prompt": request_prompt(r["request"], ctx), "gt_image": r["gt_image"], "id": r["id"]} for r in rows]
    )
