"""The built-in rubrics (``rubrics/*.md``, this project's own wording) and user substitutes."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

BUILTIN_RUBRICS = ("kscore", "sufficiency", "wise", "factip")


def builtin_rubric(name: str) -> str:
    """The text of a built-in rubric: ``kscore``, ``sufficiency``, ``wise`` or ``factip``."""
    if name not in BUILTIN_RUBRICS:
        raise ValueError(f"unknown rubric {name!r}; the built-in ones are {', '.join(BUILTIN_RUBRICS)}")
    return resources.files("genevolve_graph.evaluation").joinpath("rubrics", f"{name}.md").read_text(encoding="utf-8").strip()


def rubric_from_file(path: Path) -> str:
    """A user's rubric file (``--judge-prompt-file``); raises ``ValueError`` naming the file when unusable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"judge prompt file not found: {path} (pass an existing UTF-8 text file)")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ValueError(f"judge prompt file {path} is not UTF-8 text: {exc}") from exc
    if not text:
        raise ValueError(f"judge prompt file {path} is empty")
    return text


def rubric_id(text: str, source: str) -> dict[str, str]:
    """How a summary records which rubric produced its numbers."""
    return {"source": source, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]}
