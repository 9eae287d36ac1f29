"""Which checkpoint a run resumes from (``train grpo`` and ``train sft``), with TRL's semantics.

``--resume_from_checkpoint`` is a ``TrainingArguments`` field; TRL's own scripts pass it to
``trainer.train(resume_from_checkpoint=...)``, which restores the step, the optimizer and
scheduler, and the RNG states. This module turns the value into a checkpoint folder first, so a
wrong value ends with one line naming the input instead of a traceback after the model loaded:
a path to a ``checkpoint-N`` folder, or ``true``/``last`` for the newest one in ``output_dir``.
"""

from __future__ import annotations

from pathlib import Path

LAST = ("true", "last", "latest")


class CheckpointError(ValueError):
    """The checkpoint to resume from does not exist or is not one."""


def resolve_checkpoint(value: str | bool | None, output_dir: str | Path, *, option: str = "--resume_from_checkpoint") -> str | None:
    """The checkpoint folder to resume from, or None to start afresh."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false", "none")):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in LAST):
        from transformers.trainer_utils import get_last_checkpoint

        folder = Path(output_dir)
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if last is None:
            raise CheckpointError(f"{option}: no checkpoint-N folder in {folder}; pass a checkpoint folder or start without {option}")
        return last
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"{option} {path}: no such folder; pass a checkpoint-N folder written by an earlier run")
    if not (path / "trainer_state.json").is_file():
        raise CheckpointError(f"{option} {path}: not a checkpoint (no trainer_state.json); pass a checkpoint-N folder inside the run's output_dir")
    return str(path)


__all__ = ["LAST", "CheckpointError", "resolve_checkpoint"]
