"""Reading and checking batch input: JSONL or a JSON array of rows.

A row carries the image request in ``question`` (GenEvolve-Bench) or ``prompt``; every
other field is kept as it is and travels through both stages. ``id`` is kept when present
(a string or an integer) and is the row's position otherwise. Ids must be unique: they name
checkpointer threads, result lines and image files, so a duplicate would silently merge two
rows. Problems are reported with the file and line (or array item) so they can be fixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

PROMPT_FIELDS = ("question", "prompt")


class InputError(ValueError):
    """The input file cannot be used as it is; the message names the place and the fix."""


@dataclass(frozen=True)
class BatchRow:
    """One input row: its id as text (``key``), its position in the input, its fields."""

    key: str
    position: int
    data: dict[str, Any]

    @property
    def prompt(self) -> str:
        return prompt_of(self.data) or ""


def prompt_of(data: dict[str, Any]) -> str | None:
    """The request of a row: ``question`` first (the benchmark's field), then ``prompt``."""
    for name in PROMPT_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def row_key(value: Any) -> str:
    return str(value)


def _where(path: Path, line: int | None, item: int | None) -> str:
    if line is not None:
        return f"{path} line {line}"
    return f"{path} item {item}"


def parse_text(text: str, path: Path, *, tolerate_torn_tail: bool = False) -> tuple[list[tuple[int | None, int | None, Any]], list[str]]:
    """``[(line, item, value)]`` of the JSON values in a file, and the problems found.

    ``tolerate_torn_tail``: a last line without a newline that is not JSON is skipped (a
    writer that is still running, or was killed mid-line, left it) instead of reported.
    """
    values: list[tuple[int | None, int | None, Any]] = []
    problems: list[str] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            array = json.loads(text)
        except json.JSONDecodeError as exc:
            return [], [f"{path} line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); the file starts with '[' so it is read as one JSON array"]
        if not isinstance(array, list):
            return [], [f"{path}: expected a JSON array of rows or JSON Lines"]
        return [(None, index + 1, value) for index, value in enumerate(array)], []
    lines = text.split("\n")
    torn_tail = not text.endswith("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values.append((number, None, json.loads(line)))
        except json.JSONDecodeError as exc:
            if tolerate_torn_tail and torn_tail and number == len(lines):
                continue
            problems.append(f"{path} line {number}: not JSON ({exc.msg} at column {exc.colno}); each line must hold one JSON object")
    return values, problems


def rows_from_values(values: Iterable[tuple[int | None, int | None, Any]], path: Path, problems: list[str]) -> list[BatchRow]:
    return list(iter_rows_from_values(values, path, problems))


def iter_rows_from_values(values: Iterable[tuple[int | None, int | None, Any]], path: Path, problems: list[str]) -> Iterator[BatchRow]:
    """The checked rows of ``values``, one at a time as each value is read (a reader that
    streams a large file keeps one row in memory); problems are appended to ``problems``."""
    seen: dict[str, str] = {}
    for position, (line, item, value) in enumerate(values):
        where = _where(path, line, item)
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a JSON object with a 'question' or 'prompt' field, got {type(value).__name__}")
            continue
        data = dict(value)
        if "id" in data:
            ident = data["id"]
            if isinstance(ident, bool) or not isinstance(ident, (str, int)) or (isinstance(ident, str) and not ident.strip()):
                problems.append(f"{where}: 'id' must be a non-empty string or an integer, got {json.dumps(ident)}")
                continue
        else:
            data = {"id": position, **data}
        if prompt_of(data) is None:
            problems.append(f"{where} (id {data['id']!r}): missing prompt; give the image request as a non-empty 'question' or 'prompt' field")
            continue
        key = row_key(data["id"])
        if key in seen:
            problems.append(f"{where}: duplicate id {data['id']!r} (first at {seen[key]}); every row needs its own id")
            continue
        seen[key] = where.removeprefix(f"{path} ")
        yield BatchRow(key=key, position=position, data=data)


def read_rows(path: Path, *, option: str = "--input", tolerate_torn_tail: bool = False) -> list[BatchRow]:
    """All rows of a JSONL or JSON-array file, checked; raises ``InputError`` naming the
    first problem (and how many more there are)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; pass an existing JSONL or JSON file as {option}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder; pass a JSONL or JSON file as {option}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}); pass a JSONL or JSON file as {option}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror}); check {option}") from None
    values, problems = parse_text(text, path, tolerate_torn_tail=tolerate_torn_tail)
    rows = rows_from_values(values, path, problems)
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''} in the file)" if len(problems) > 1 else ""
        raise InputError(problems[0] + more)
    if not rows:
        raise InputError(f"{path} holds no rows; put one JSON object per line, each with a 'question' or 'prompt'")
    return rows
