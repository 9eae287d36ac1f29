"""Reading JSONL input files with errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


def iter_jsonl(path: Path, what: str, error: type[Exception]) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line; a bad line raises ``error``
    saying ``"<what> <path> line N: not JSON (...)"``."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{what} {path} line {number}: not JSON ({exc.msg})") from None


def unencodable(value: Any, where: str = "") -> str | None:
    """Where ``value`` holds text that UTF-8 cannot encode (a lone surrogate such as
    ``\\ud800``, which JSON's ``\\u`` escapes can carry into any parsed string), described as
    ``"'field' (character N)"``; ``None`` when everything encodes. Such a row cannot be sent
    to an endpoint, written to a checkpoint or a UTF-8 file, so it must fail alone."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"{where or 'the text'} (character {exc.start}: a lone surrogate {value[exc.start]!r})"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unencodable(key, f"a field name in {where or 'the row'}") or unencodable(item, f"{where}.{key}" if where else f"'{key}'")
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = unencodable(item, f"{where or 'the row'}[{index}]")
            if problem:
                return problem
    return None


def dumps_safe(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` with ``ensure_ascii=False`` whose result always encodes as UTF-8: text
    holding a lone surrogate falls back to ASCII escapes (still valid JSON that reads back
    to the same value), so one odd row can never make a results file unwritable."""
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, **kwargs)
    return text
