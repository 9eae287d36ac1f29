"""Splitting one input across machines (``--shard i/n``) and joining the shards' outputs.

Shard ``i`` of ``n`` takes the rows at positions ``i, i+n, i+2n, ...`` of the input (after
``--max-samples``): deterministic, needs no coordination, and keeps every shard's mix of
categories and difficulties close to the whole. ``merge`` checks that the shards belong
together (same stage, same input, ``n`` distinct shards, no id twice) and writes one
``results.jsonl``/``results.json`` in input order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genevolve_graph.batch.engine import MANIFEST, RESULTS_JSON, RESULTS_JSONL, now_iso
from genevolve_graph.batch.journal import ResultJournal, read_json, write_json_atomic
from genevolve_graph.batch.rows import BatchRow, InputError, parse_text, row_key

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    match = _SHARD.match(text or "")
    if not match:
        raise InputError(f"--shard {text!r} is not of the form i/n (for example 0/4 for the first of four shards)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise InputError(f"--shard {text}: the index must be in 0..{max(count - 1, 0)} (shards are numbered from 0) and n at least 1")
    return index, count


def select_shard(rows: list[BatchRow], index: int, count: int) -> list[BatchRow]:
    return rows[index::count]


@dataclass
class MergeResult:
    out_dir: Path
    rows: int
    shards: list[str]
    notes: list[str] = field(default_factory=list)


def _read_shard(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    notes: list[str] = []
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{folder} has no {MANIFEST}; pass the --out folders of 'genevolve-graph batch' or 'render'")
    try:
        manifest = read_json(manifest_path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{manifest_path} is not readable JSON ({exc})") from None
    path = folder / RESULTS_JSONL
    if not path.is_file():
        return manifest, [], [f"note: {folder} has no {RESULTS_JSONL} yet (no rows recorded)"]
    text = path.read_text(encoding="utf-8")
    values, problems = parse_text(text, path, tolerate_torn_tail=True)
    if problems:
        raise InputError(problems[0])
    if text and not text.endswith("\n"):
        notes.append(f"note: {path} ends in a torn line (a run still going or killed); that row is left out")
    records = [value for _, _, value in values]
    for record in records:
        if not isinstance(record, dict) or "id" not in record:
            raise InputError(f"{path} holds a line that is not a result row (no 'id')")
    return manifest, records, notes


def merge_runs(folders: list[Path], out_dir: Path, *, allow_partial: bool = False) -> MergeResult:
    """Join the outputs of ``batch --shard i/n`` (or of ``render`` over them) into ``out_dir``."""
    if not folders:
        raise InputError("give the shard folders to merge")
    folders = [Path(f).expanduser() for f in folders]
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) != len(resolved):
        raise InputError("the same folder is given twice; give each shard's --out folder once")
    out_dir = Path(out_dir).expanduser()
    if out_dir.resolve() in resolved:
        raise InputError(f"--out {out_dir} is one of the shards; merge into another folder")
    existing = out_dir / MANIFEST
    if existing.is_file():
        try:
            merged_before = read_json(existing).get("run_id") == "merged"
        except (OSError, ValueError, AttributeError):
            merged_before = False
        if not merged_before:
            raise InputError(f"--out {out_dir} holds a run of its own; merge into a new folder (or one an earlier merge wrote)")
    loaded = [(folder, *_read_shard(folder)) for folder in folders]
    notes: list[str] = [n for _, _, _, ns in loaded for n in ns]
    stages = {m.get("stage") for _, m, _, _ in loaded}
    if len(stages) != 1:
        raise InputError(f"the folders hold different stages ({', '.join(sorted(map(str, stages)))}); merge rollouts with rollouts and renders with renders")
    stage = stages.pop()
    if stage == "rollouts":
        specs = [m.get("shard") for _, m, _, _ in loaded]
        if None in specs:
            raise InputError("a folder holds a run over the whole input (no --shard); there is nothing to merge it with")
        parsed = [parse_shard(s) for s in specs]
        counts = {n for _, n in parsed}
        if len(counts) != 1:
            raise InputError(f"the shards split the input differently ({', '.join(sorted(set(specs)))}); all must use the same n")
        count = counts.pop()
        indexes = [i for i, _ in parsed]
        twice = sorted({i for i in indexes if indexes.count(i) > 1})
        if twice:
            raise InputError(f"shard {twice[0]}/{count} is given twice; give each shard's folder once")
        missing = sorted(set(range(count)) - set(indexes))
        if missing and not allow_partial:
            raise InputError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing; give all {count} folders or pass --allow-partial")
        digests = {m.get("input_sha256") for _, m, _, _ in loaded}
        if len(digests) > 1:
            notes.append("note: the shards were run on inputs that differ (input_sha256); check that they belong together")
    order: dict[str, int] = {}
    for _, manifest, _, _ in loaded:
        for position, key in manifest.get("rows", []):
            order.setdefault(key, position)
    merged: dict[str, dict[str, Any]] = {}
    origin: dict[str, Path] = {}
    for folder, manifest, records, _ in loaded:
        for record in records:
            key = row_key(record["id"])
            if key in merged:
                raise InputError(f"id {record['id']!r} is in both {origin[key]} and {folder}; shards must not overlap")
            if stage == "renders":
                record = _relocate_image(record, folder)
            merged[key] = record
            origin[key] = folder
    expected = len(order)
    if len(merged) < expected:
        notes.append(f"note: {expected - len(merged)} of {expected} rows are not recorded yet in the shards; resume those shards and merge again")
    ordered = sorted(merged.items(), key=lambda item: (item[0] not in order, order.get(item[0], 0)))
    out_dir.mkdir(parents=True, exist_ok=True)
    journal = ResultJournal(out_dir / RESULTS_JSONL)
    journal.rewrite(record for _, record in ordered)
    write_json_atomic(out_dir / RESULTS_JSON, [record for _, record in ordered])
    write_json_atomic(out_dir / MANIFEST, {
        "tool": "genevolve-graph", "stage": stage, "merged": now_iso(), "run_id": "merged",
        "shards": [{"folder": str(f.resolve()), "shard": m.get("shard"), "run_id": m.get("run_id"), "checkpoint": m.get("checkpoint"),
                    "rows": len(r)} for f, m, r, _ in loaded],
        "shard": None, "rows": [[order.get(key, -1), key] for key, _ in ordered],
    }, indent=None)
    return MergeResult(out_dir=out_dir, rows=len(ordered), shards=[str(f) for f in folders], notes=notes)


def _relocate_image(record: dict[str, Any], folder: Path) -> dict[str, Any]:
    """An image path written on another machine: point it into the copied shard folder."""
    path = record.get("output_path")
    if not path or Path(path).exists():
        return record
    local = folder / "images" / Path(path).name
    if local.exists():
        record = dict(record, output_path=str(local.resolve()))
    return record


__all__ = ["parse_shard", "select_shard", "merge_runs", "MergeResult"]
