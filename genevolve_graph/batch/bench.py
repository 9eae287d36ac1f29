"""GenEvolve-Bench from a local copy of the public data set.

The data set's ``GenEvolve-Bench/test.jsonl`` holds one row per prompt: ``id``,
``question``, ``gt_image`` (a path relative to the data set), ``eval_type``, ``category``,
``difficulty`` (and ``meta``/``extra_info``). Rows go through both stages unchanged; a
``gt_image_path`` with the absolute path of the ground-truth image is added when the image
is found, so that the judge can be run from anywhere.
"""

from __future__ import annotations

from pathlib import Path

from genevolve_graph.batch.rows import BatchRow, InputError, read_rows

BENCH_DIR = "GenEvolve-Bench"
BENCH_FILE = "test.jsonl"
EXPECTED_ROWS = 594


def find_bench_file(root: Path) -> Path:
    """``ROOT/GenEvolve-Bench/test.jsonl``; ROOT may also be the GenEvolve-Bench folder itself."""
    root = Path(root).expanduser()
    candidates = [root / BENCH_DIR / BENCH_FILE, root / BENCH_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(
        f"no {BENCH_DIR}/{BENCH_FILE} under {root} (--data); download the public GenEvolve-Bench data set and pass "
        f"the folder that contains {BENCH_DIR}/"
    )


def resolve_gt_image(relative: str, bench_file: Path, root: Path) -> Path | None:
    """The ground-truth image of a row: relative to the data set folder or to ROOT."""
    for base in (bench_file.parent, Path(root).expanduser(), bench_file.parent.parent):
        candidate = (base / relative).resolve()
        if candidate.is_file():
            return candidate
    return None


def read_bench(root: Path) -> tuple[Path, list[BatchRow], list[str]]:
    """The benchmark's rows (checked like any batch input), the file, and notes."""
    path = find_bench_file(root)
    rows = read_rows(path, option="--data")
    notes: list[str] = []
    missing = 0
    for row in rows:
        gt = row.data.get("gt_image")
        if isinstance(gt, str) and gt:
            found = resolve_gt_image(gt, path, root)
            if found is None:
                missing += 1
            else:
                row.data["gt_image_path"] = str(found)
    if missing:
        notes.append(f"note: {missing} of {len(rows)} ground-truth images named by 'gt_image' are not under {root}; judging needs them")
    if len(rows) != EXPECTED_ROWS:
        notes.append(f"note: {path} holds {len(rows)} rows; the published GenEvolve-Bench has {EXPECTED_ROWS}")
    return path, rows, notes
