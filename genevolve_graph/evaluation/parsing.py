"""Recovering scores from what a judge model actually writes.

Judges are asked for one JSON object, and mostly comply; the rest of the time the object
comes inside a Markdown fence, with a trailing comma, as a Python dict, wrapped in prose,
or as flat ``key: value`` lines. Each of these is recovered here; what cannot be recovered
raises ``ValueError`` so that the caller can ask the judge again.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from genevolve_graph.core.protocol import loads_lenient

_FENCE_ANYWHERE_RE = re.compile(r"```[A-Za-z0-9_-]*\s*(.*?)```", re.S)
_TRUE = {"true", "yes", "y", "1", "n/a", "na", "not applicable"}
_FALSE = {"false", "no", "n", "0"}


def recover_object(text: str, keys: Sequence[str]) -> dict[str, Any]:
    """The judge's answer as a dict; ``keys`` are the fields the flat-text fallback looks for.

    Tried in order: JSON (fences, trailing commas and surrounding prose forgiven), a
    fenced block anywhere in the text, a Python-literal dict, then ``key: value`` lines.
    Raises ``ValueError`` when none of them yields at least one of ``keys``.
    """
    if not text or not text.strip():
        raise ValueError("the judge returned no text")
    candidates = [text]
    candidates += [m.group(1) for m in _FENCE_ANYWHERE_RE.finditer(text)]
    for candidate in candidates:
        try:
            obj = loads_lenient(candidate)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return obj
        start, end = candidate.find("{"), candidate.rfind("}")
        if start != -1 and end > start:
            try:
                obj = ast.literal_eval(candidate[start : end + 1])
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                obj = None
            if isinstance(obj, dict):
                return obj
    flat = _flat_pairs(text, keys)
    if flat:
        return flat
    snippet = " ".join(text.split())[:160]
    raise ValueError(f"no JSON object or 'key: value' scores in the judge output: {snippet!r}")


def _flat_pairs(text: str, keys: Iterable[str]) -> dict[str, Any]:
    """``key: value`` (or ``"key": value,``) pairs for the known keys, anywhere in the text."""
    found: dict[str, Any] = {}
    for key in keys:
        label = re.escape(key).replace("_", "[ _]")
        quoted = re.search(rf'["\']?\b{label}\b["\']?\s*[:=]\s*"((?:[^"\\]|\\.)*)"', text, re.I | re.S)
        if quoted:
            found[key] = quoted.group(1).replace('\\"', '"').replace("\\n", "\n")
            continue
        plain = re.search(rf'["\']?\b{label}\b["\']?\s*\**\s*[:=]\s*\**\s*([^,\n}}\]]+)', text, re.I)
        if plain:
            found[key] = plain.group(1).strip().strip("*").strip().strip("'\"").strip()
    return found


def coerce_score(value: Any, grid: Sequence[float], *, name: str) -> float:
    """A judge's number snapped onto ``grid`` (the allowed values).

    Numbers and numeric strings inside the grid's range are snapped to the nearest allowed
    value (ties go to the lower one, the stricter reading); anything else raises
    ``ValueError`` naming the field.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        text = value.strip().rstrip(".")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    low, high = min(grid), max(grid)
    if value < low - 1e-9 or value > high + 1e-9:
        raise ValueError(f"{name} = {value} is outside {low}..{high}")
    return float(min(grid, key=lambda g: (abs(g - value), g)))


def coerce_bool(value: Any, *, name: str) -> bool:
    """A judge's yes/no: booleans, 0/1 and the usual words."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false, got {value!r}")
