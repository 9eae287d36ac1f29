"""The data folder's layout and the outcome of an item at each stage.

``DIR/requests/``, ``DIR/trajectories/``, ``DIR/filter/``, ``DIR/render/``,
``DIR/visual-filter/`` are run folders (``results.jsonl``, ``run.json``); the split writes
``DIR/sft/``, ``DIR/rl/``, ``DIR/bench/`` and ``DIR/split.json``. Every item of a stage ends
in one of three outcomes:

- ``kept``: goes on to the next stage;
- ``dropped``: a quality decision (a failed check, a low judge score), with its reason;
- ``infra_error``: something outside the data failed (an endpoint, the renderer, a judge
  after its retries). It is counted apart from quality drops and never read as a verdict
  on the item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STAGES = ("requests", "trajectories", "filter", "render", "visual-filter", "split")
KEPT, DROPPED, INFRA = "kept", "dropped", "infra_error"
OUTCOMES = (KEPT, DROPPED, INFRA)

REQUESTS_FILE = "requests.jsonl"
"""The requests stage's output (after de-duplication); its ``results.jsonl`` journals the cells."""
DEDUP_FILE = "dedup.json"
SELECTION_FILE = "selection.json"
"""In ``render/``: which filtered trajectories get a ground-truth render and which go to SFT."""
SPLIT_FILE = "split.json"
STAGE_DONE = "stage.json"
"""Written into a stage folder when every item of the stage is recorded."""


def stage_dir(root: Path, stage: str) -> Path:
    return Path(root) / stage


def trajectory_outcome(record: dict[str, Any]) -> tuple[str, str | None]:
    """A teacher rollout: an answer goes on; an endpoint or internal error is infrastructure;
    any other ending (no answer, unreadable answer) is the teacher's failure."""
    termination = record.get("termination")
    if termination == "answer":
        return KEPT, None
    if termination == "error":
        return INFRA, "teacher_error"
    return DROPPED, f"termination_{termination}"


def render_outcome(record: dict[str, Any]) -> tuple[str, str | None]:
    """A ground-truth render: every failure is the renderer's (the program passed the filter)."""
    return (KEPT, None) if record.get("success") else (INFRA, "render_error")


def field_outcome(record: dict[str, Any], key: str) -> tuple[str, str | None]:
    return record.get(f"{key}_status"), record.get(f"{key}_reason")


def outcome(stage: str, record: dict[str, Any]) -> tuple[str, str | None]:
    if stage == "trajectories":
        return trajectory_outcome(record)
    if stage == "render":
        return render_outcome(record)
    if stage == "filter":
        return field_outcome(record, "filter")
    if stage == "visual-filter":
        return field_outcome(record, "visual")
    raise ValueError(f"no per-item outcome for stage {stage!r}")
