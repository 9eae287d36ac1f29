"""Stage 6, split: the deterministic, seeded three-way split, and the selection that
decides which filtered trajectories get a ground-truth render.

Order never matters: every item is placed by ``sha256("<seed>:<view>:<id>")``. The same ids
and seed give the same split on any machine and after any resume.

- ``selection.json`` (written by the render stage): a filtered trajectory is a ground-truth
  candidate when its own draw is below ``gt_fraction`` (stable when items are added later);
  the others form the SFT view. The two never overlap, so no SFT trajectory's request
  reappears in RL or the benchmark.
- the benchmark takes exactly ``bench_size`` (or ``round(bench_fraction * n)``) of the kept
  renders: those with the smallest keys.
- ``sft/``: the SFT records of the SFT view, written by the trace export itself
  (``export --format sft`` on their threads): messages, every image-search image, no
  ground-truth image.
- ``rl/train.jsonl``: the renders the visual filter kept, less the benchmark: ``id``,
  ``prompt``, ``gt_image`` (``images/<id>.png``, relative to ``rl/``) and metadata; what
  ``train grpo`` reads with ``data.path: rl/train.jsonl``.
- ``bench/test.jsonl``: GenEvolve-Bench rows ``id, question, gt_image, eval_type, category,
  difficulty`` (plus ``hard_constraints``), images under ``bench/images/``; what
  ``bench genevolve --data DIR/bench`` and ``evaluate --gt-root DIR/bench`` read.
"""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from genevolve_graph.data import batch_adapter as engine
from genevolve_graph.data.layout import KEPT, SELECTION_FILE, SPLIT_FILE, outcome
from genevolve_graph.data.recipes import Recipe

BENCH_FIELDS = ("id", "question", "gt_image", "eval_type", "category", "difficulty")
META_FIELDS = ("hard_constraints", "cell", "recipe", "thread_id")


def order_key(seed: int, view: str, ident: str) -> str:
    return hashlib.sha256(f"{seed}:{view}:{ident}".encode()).hexdigest()


def take(ids: list[str], fraction: float, *, seed: int, view: str, size: int | None = None) -> list[str]:
    """The ids chosen for ``view``: the first ``size`` (or ``round(fraction * n)``) by seeded key, in input order."""
    count = size if size is not None else round(fraction * len(ids))
    chosen = set(sorted(ids, key=lambda i: order_key(seed, view, i))[: max(0, min(count, len(ids)))])
    return [i for i in ids if i in chosen]


def unit(seed: int, view: str, ident: str) -> float:
    """The item's own draw in [0, 1), from its seeded key."""
    return int(order_key(seed, view, ident)[:15], 16) / 16**15


def select_gt(recipe: Recipe, root: Path, filtered: list[str]) -> dict[str, list[str]]:
    """The ground-truth candidates and the SFT view of the filtered trajectories, written to
    ``render/selection.json``. Each item is a candidate when its own draw is below
    ``gt_fraction``, so items added later (a retried outage) never move the others."""
    gt = [i for i in filtered if unit(recipe.split.seed, "gt", i) < recipe.split.gt_fraction]
    chosen = set(gt)
    selection = {"seed": recipe.split.seed, "gt_fraction": recipe.split.gt_fraction, "gt": gt,
                 "sft": [i for i in filtered if i not in chosen]}
    engine.write_json_atomic(root / "render" / SELECTION_FILE, selection)
    return selection


def _records(path: Path, option: str) -> Iterator[dict[str, Any]]:
    """A finished stage's records, read one at a time (the stage's rows are kept as file offsets)."""
    return (item.data for item in engine.read_items(path, option=option))


def write_split(recipe: Recipe, root: Path, *, checkpoint: str) -> dict[str, Any]:
    """Write ``sft/``, ``rl/`` and ``bench/`` and ``split.json``; returns the counts.

    The records are streamed: the filter stage gives only the thread of each SFT row, the
    visual filter's kept renders are read once for their ids (the benchmark draw) and once
    as they are written, so memory holds ids, not records."""
    selection = json.loads((root / "render" / SELECTION_FILE).read_text(encoding="utf-8"))
    wanted = set(selection["sft"])
    threads: dict[str, str] = {}
    for record in _records(root / "filter" / "results.jsonl", "the filter stage's output"):
        ident = record["id"] if isinstance(record["id"], str) else str(record["id"])
        if ident in wanted:
            threads[ident] = record["thread_id"]
    visual_option = "the visual-filter stage's output (run --stages visual-filter first)"
    visual = engine.read_items(root / "visual-filter" / "results.jsonl", option=visual_option,
                               keep=lambda data: outcome("visual-filter", data)[0] == KEPT)
    kept_ids = [item.key for item in visual]
    bench_ids = set(take(kept_ids, recipe.split.bench_fraction, seed=recipe.split.seed, view="bench", size=recipe.split.bench_size))
    counts: dict[str, Any] = {"seed": recipe.split.seed}
    counts["sft"] = write_sft(root / "sft", [threads[i] for i in selection["sft"] if i in threads], checkpoint)
    rl_by: collections.Counter[str] = collections.Counter()
    bench_by: collections.Counter[str] = collections.Counter()
    counts["rl"] = write_rl(root / "rl", _counted((item.data for item in visual if item.key not in bench_ids), rl_by))
    counts["bench"] = write_bench(root / "bench", _counted((item.data for item in visual if item.key in bench_ids), bench_by))
    counts["bench_by_eval_type"] = dict(sorted(bench_by.items()))
    counts["rl_by_eval_type"] = dict(sorted(rl_by.items()))
    engine.write_json_atomic(root / SPLIT_FILE, counts)
    return counts


def _counted(rows: Iterable[dict[str, Any]], by: collections.Counter[str], field: str = "eval_type") -> Iterator[dict[str, Any]]:
    """``rows`` as they are, counting each one's ``field`` into ``by``."""
    for row in rows:
        by[str(row.get(field))] += 1
        yield row


def _fresh(folder: Path) -> Path:
    """A new temporary folder beside ``folder``; renamed over it when complete."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    return tmp


def _publish(tmp: Path, folder: Path) -> None:
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def write_sft(folder: Path, threads: list[str], checkpoint: str) -> int:
    """The SFT view through the trace export (the same records ``export --format sft --thread ...`` writes)."""
    from genevolve_graph.persistence import open_checkpointer_sync
    from genevolve_graph.training.export import ExportReport, export_threads
    from genevolve_graph.training.sft_data import JsonlWriter

    tmp = _fresh(folder)
    report = ExportReport()
    with open_checkpointer_sync(checkpoint) as saver, JsonlWriter(tmp / "train.jsonl") as writer:
        for record in export_threads(saver, thread_ids=threads, images_dir=tmp / "images", report=report):
            writer.write(record.to_json())
    if report.problems:
        (tmp / "problems.txt").write_text("".join(f"{t}: {p}\n" for t, p in report.problems), encoding="utf-8")
    _publish(tmp, folder)
    return report.exported


def _copy_image(row: dict[str, Any], images: Path) -> str:
    source = Path(row["output_path"])
    name = f"{engine.file_stem(str(row['id']))}{source.suffix or '.png'}"
    shutil.copyfile(source, images / name)
    return f"images/{name}"


def write_rl(folder: Path, rows: Iterable[dict[str, Any]]) -> int:
    tmp = _fresh(folder)
    written = 0
    with open(tmp / "train.jsonl", "w", encoding="utf-8") as stream:
        for row in rows:
            out = {"id": row["id"], "prompt": row.get("question") or row.get("prompt"), "gt_image": _copy_image(row, tmp / "images"),
                   "eval_type": row.get("eval_type"), "category": row.get("category"), "difficulty": row.get("difficulty")}
            out.update({k: row.get(k) for k in META_FIELDS if k in row})
            stream.write(json.dumps(out, ensure_ascii=False) + "\n")
            written += 1
    _publish(tmp, folder)
    return written


def write_bench(folder: Path, rows: Iterable[dict[str, Any]]) -> int:
    tmp = _fresh(folder)
    written = 0
    with open(tmp / "test.jsonl", "w", encoding="utf-8") as stream:
        for row in rows:
            out = {"id": row["id"], "question": row.get("question") or row.get("prompt"), "gt_image": _copy_image(row, tmp / "images"),
                   "eval_type": row.get("eval_type"), "category": row.get("category"), "difficulty": row.get("difficulty"),
                   "hard_constraints": row.get("hard_constraints"), "cell": row.get("cell")}
            stream.write(json.dumps(out, ensure_ascii=False) + "\n")
            written += 1
    _publish(tmp, folder)
    return written
