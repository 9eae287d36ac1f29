"""RL rows (GenEvolve-Data-RL style) as the TRL dataset the trainer reads.

A row needs the image request (``prompt``, or ``question`` as in GenEvolve-Bench) and its
ground-truth image (``gt_image``, relative to the data set's root). The dataset gets:

* ``prompt``: the policy's first two messages (system prompt with the tool block, request)
  exactly as the agent graph builds them for the same agent settings;
* ``gt_image``: an absolute path (checked to exist, so a bad path fails at start, not as
  missing rewards hours later);
* ``id``: the row's id (or its line number).

A row may also list the user's reference images (``request_images``: paths relative to the
root, like ``gt_image``). A vision-language policy sees them after the request text, as the
graph shows ``request_images`` at inference; they enter the prompt as data URIs (long side
capped by the ``thumbnail_max_side`` agent option, default 256).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genevolve_graph.core.context import AgentContext
from genevolve_graph.util.jsonl import iter_jsonl
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
        extra = row.get("request_images") or []
        if not isinstance(extra, list) or not all(isinstance(p, str) and p for p in extra):
            raise DataError(f"RL data {path} line {number}: request_images must be a list of image paths")
        images = []
        for item in extra:
            image_path = Path(item) if Path(item).is_absolute() else root / item
            if not image_path.is_file():
                raise DataError(f"RL data {path} line {number}: request image {image_path} does not exist; set data.root to the data set's folder")
            images.append(str(image_path.resolve()))
        rows.append({"id": str(row.get("id", number)), "request": request.strip(), "gt_image": str(gt_path.resolve()),
                     **({"request_images": images} if images else {})})
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"RL data {path} holds no rows")
    return rows


def build_dataset(rows: list[dict[str, Any]], ctx: AgentContext):
    """A ``datasets.Dataset`` with ``prompt`` (chat messages), ``gt_image`` and ``id``."""
    from datasets import Dataset

    from genevolve_graph.tools.thumbnails import thumbnail_data_url

    side = int(ctx.options.get("thumbnail_max_side", 256))

    def prompt(row: dict[str, Any]) -> list[dict[str, Any]]:
        images = [thumbnail_data_url(p, max_side=side) for p in row.get("request_images") or []]
        return request_prompt(row["request"], ctx, images or None)

    prompts = [prompt(r) for r in rows]
    if any(isinstance(m["content"], list) for p in prompts for m in p):  # one content type per column (Arrow)
        prompts = [[{**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m["content"], str) else m for m in p] for p in prompts]
    return Dataset.from_list([{"prompt": p, "gt_image": r["gt_image"], "id": r["id"]} for p, r in zip(prompts, rows, strict=True)])
