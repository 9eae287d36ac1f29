"""Reading stage-2 results and writing per-sample judgements incrementally.

Stage-2 results (DESIGN.md §4) come as JSONL or as one JSON array. Judgements go to a JSONL
log, one line per sample, flushed and fsynced as each sample finishes, so that an
interrupted run loses at most the samples in flight and ``--resume`` picks up where it
stopped. When a run ends the log is rewritten in input order with one line per sample.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genevolve_graph.util.jsonl import dumps_safe


STAGE2_FIELDS = frozenset({
    "gen_prompt", "reference_images", "messages", "termination", "rounds", "error", "thread_id", "output_path",
    "success", "render_error", "backend", "gt_image_path", "program", "trajectory",
})
"""Fields our stages add to a row; the rest of a results row is the benchmark's item."""


def benchmark_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's own fields of a stage-2 row (every field but those our stages add)."""
    return {k: v for k, v in row.items() if k not in STAGE2_FIELDS}


class EvalInputError(ValueError):
    """Bad input to an evaluation command; the message names the input and the fix."""


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file or a JSON array file (detected from the first character)."""
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"results file not found: {path}")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if not stripped:
        raise EvalInputError(f"results file {path} is empty")
    if stripped.startswith("["):
        try:
            rows = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"results file {path} is not a valid JSON array: {exc}") from exc
        where = "item"
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{path} line {number} is not valid JSON ({exc}); results must be JSONL or a JSON array") from exc
        where = "line"
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise EvalInputError(f"{path} {where} {index + 1} is not a JSON object")
    # Summary rows that some tools append to their results (``{"summary_type": ...}``) are not samples.
    return [row for row in rows if "summary_type" not in row]


def sample_ids(rows: list[dict[str, Any]], path: Path) -> list[str]:
    """Each row's id as a string (its position when it has none); duplicate ids are an error."""
    ids = [str(row["id"]) if row.get("id") not in (None, "") else str(index) for index, row in enumerate(rows)]
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise EvalInputError(f"{path} has more than one sample with id {sid!r}; ids must be unique")
        seen.add(sid)
    return ids


class OutsideRoot(ValueError):
    """A path field that leaves the roots it must stay under."""


def resolve_path(value: Any, roots: Iterable[Path], *, confine: bool = False) -> tuple[Path | None, str]:
    """(existing file, "") for a path field, else (None, the reason).

    Absolute paths are taken as they are; relative ones are tried against each root in turn.
    With ``confine``, the file must lie under one of the roots once every symlink and ``..``
    is resolved; otherwise :class:`OutsideRoot` says which path left which roots.
    """
    if value in (None, ""):
        return None, "no path given"
    raw = Path(str(value)).expanduser()
    roots = [Path(root) for root in roots]
    candidates = [raw] if raw.is_absolute() else [root / raw for root in roots]
    if confine:
        real_roots = [root.resolve() for root in roots]
        inside = [c for c in candidates if any(r == c.resolve() or r in c.resolve().parents for r in real_roots)]
        if not inside:
            where = ", ".join(str(r) for r in real_roots)
            raise OutsideRoot(f"{value} resolves to {candidates[0].resolve()}, outside {where}")
        candidates = inside
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve(), ""
    tried = ", ".join(str(c) for c in candidates) or str(raw)
    return None, f"{value} not found (tried {tried})"


class EvalLog:
    """An append-only JSONL of per-sample judgement records, keyed by ``id``."""

    def __init__(self, path: Path, *, key: str = "id") -> None:
        self.path = Path(path)
        self.key = key

    def load(self) -> dict[str, dict[str, Any]]:
        """Records by id; a later line for the same id wins. A torn last line (a crash while
        writing) is ignored; a bad line elsewhere is an error naming the line."""
        if not self.path.exists():
            return {}
        records: dict[str, dict[str, Any]] = {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines):
                    break
                raise EvalInputError(f"{self.path} line {number} is not valid JSON ({exc}); delete the line or rerun without --resume") from exc
            records[str(record.get(self.key))] = record
        return records

    def reset(self) -> None:
        """Start an empty log."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        """Append one record durably (flush + fsync), so a crash cannot lose a finished sample."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(dumps_safe(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def compact(self, records: list[dict[str, Any]]) -> None:
        """Replace the log by ``records`` (one per sample, in input order) atomically."""
        write_text_atomic(self.path, "".join(dumps_safe(r) + "\n" for r in records))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Pretty JSON written atomically."""
    write_text_atomic(path, dumps_safe(obj, indent=2) + "\n")
