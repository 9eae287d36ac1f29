"""GenEvolve-Bench, KnowGen-Bench and FactIP from local copies of the public data sets.

The data set's ``GenEvolve-Bench/test.jsonl`` holds one row per prompt: ``id``,
``question``, ``gt_image`` (a path relative to the data set), ``eval_type``, ``category``,
``difficulty`` (and ``meta``/``extra_info``). Rows go through both stages unchanged; a
``gt_image_path`` with the absolute path of the ground-truth image is added when the image
is found, so that the judge can be run from anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from genevolve_graph.batch.rows import BatchRow, InputError, read_rows, rows_from_values

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


KNOWGEN_FILE = "KnowGen-Bench.json"
FACTIP_FILES = {"test": "test.json", "mini": "test_mini.json"}


def _find(root: Path, name: str, what: str) -> Path:
    root = Path(root).expanduser()
    if root.is_file():
        return root
    if (root / name).is_file():
        return root / name
    raise InputError(f"no {name} under {root} (--data); download {what} and pass the folder that holds {name}")


def read_knowgen_bench(root: Path) -> tuple[Path, list[BatchRow], list[str]]:
    """KnowGen-Bench.json (a JSON array of {id, prompt, meta, gt_image}), its rows, and notes.
    ``gt_image`` stays relative to the file's folder, where the judge looks for it."""
    path = _find(root, KNOWGEN_FILE, "KnowGen-Bench (Hugging Face GenSearcher/KnowGen-Bench, with its images unzipped)")
    rows = read_rows(path, option="--data")
    missing = sum(1 for row in rows if not (path.parent / str(row.data.get("gt_image") or "\0")).is_file())
    notes = [f"note: {missing} of {len(rows)} ground-truth images named by 'gt_image' are not under {path.parent}; "
             "judging needs them"] if missing else []
    return path, rows, notes


def read_factip_bench(root: Path, split: str = "test") -> tuple[Path, list[BatchRow], list[str]]:
    """FactIP's prompt file (an object mapping each id to {image_prompt, source_category, ...}) as
    rows: the id and ``prompt`` (= ``image_prompt``) added, every field kept."""
    path = _find(root, FACTIP_FILES[split], "FactIP (Hugging Face csfufu/FactIP)")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path} (--data): {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not FactIP's format: a JSON object mapping each id to its item (--data)")
    values = []
    for index, (key, item) in enumerate(data.items()):
        if not isinstance(item, dict):
            raise InputError(f"{path} item {key!r} is not a JSON object (--data)")
        values.append((None, index + 1, {"id": str(key), **{k: v for k, v in item.items() if k != "id"},
                                         "prompt": item.get("image_prompt")}))
    problems: list[str] = []
    rows = rows_from_values(values, path, problems)
    if problems:
        raise InputError(problems[0])
    return path, rows, []
