"""The held-out split of ``train sft --eval-split`` and the config that selects the best checkpoint.

Phase 2 ends when the policy's trajectory loss on held-out data stops improving, so SFT
evaluates a held-out set on the checkpoint schedule and keeps the checkpoint with the lowest
``eval_loss`` (``load_best_model_at_end``); the model saved to ``--out`` is that one.

- ``--eval-split 0.1``: a fraction of the *prompts* of ``--data`` is held out. All the
  trajectories of one request go to the same side, so several rollouts of one prompt
  cannot leak its answer into the held-out loss. The split uses a fixed seed, so runs with
  different training seeds compare on the same held-out prompts.
- ``--eval-split FILE_OR_FOLDER``: separate held-out records, validated like ``--data``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from genevolve_graph.training.sft_data import SFTDataError, SFTRecord, load_training_records

SPLIT_SEED = 0


class EvalSplitError(ValueError):
    """The ``--eval-split`` value cannot be used; the message says why and what to pass."""


@dataclass
class EvalSplit:
    train: list[SFTRecord]
    eval: list[SFTRecord]
    source: str
    """``"0.1 of the prompts of --data"`` or the held-out path."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """Skipped held-out records (a separate file only)."""


def prompt_key(record: SFTRecord) -> str:
    """The request a trajectory answers: its first user turn (the grouping key of the split)."""
    for message in record.messages:
        if message.role == "user":
            return message.text()
    return ""


def split_by_prompt(records: list[SFTRecord], fraction: float, seed: int = SPLIT_SEED) -> tuple[list[SFTRecord], list[SFTRecord]]:
    """(train, held-out): ``fraction`` of the distinct prompts (at least one) is held out.

    Raises ``EvalSplitError`` when either side would be empty.
    """
    keys = sorted({prompt_key(r) for r in records})
    if len(keys) < 2:
        raise EvalSplitError(
            f"--eval-split {fraction}: the data has {len(keys)} distinct prompt(s), and a held-out split needs at least 2; "
            "add data or pass a separate held-out file (--eval-split FILE)"
        )
    n_eval = min(len(keys) - 1, max(1, round(fraction * len(keys))))
    held = set(random.Random(seed).sample(keys, n_eval))
    train = [r for r in records if prompt_key(r) not in held]
    held_out = [r for r in records if prompt_key(r) in held]
    return train, held_out


def parse_fraction(value: str) -> float | None:
    """The fraction in ``value``, or None when it is not a number (then it names a file)."""
    try:
        fraction = float(value)
    except ValueError:
        return None
    if not 0.0 < fraction < 1.0:
        raise EvalSplitError(f"--eval-split {value}: a fraction must lie strictly between 0 and 1 (e.g. 0.1), or pass a file of held-out records")
    return fraction


def resolve_eval_split(value: str, records: list[SFTRecord], data: Path) -> EvalSplit:
    """The training and held-out records for ``--eval-split value`` (``records`` come from ``data``)."""
    fraction = parse_fraction(value)
    if fraction is not None:
        train, held_out = split_by_prompt(records, fraction)
        return EvalSplit(train, held_out, f"{fraction} of the prompts of --data")
    path = Path(value).expanduser()
    if path.resolve() == Path(data).expanduser().resolve():
        raise EvalSplitError(f"--eval-split {value} is the training data itself; pass a separate file of held-out records or a fraction such as 0.1")
    try:
        held_out, loaded = load_training_records(path)
    except SFTDataError as exc:
        raise EvalSplitError(f"{exc} (--eval-split)") from None
    if not held_out:
        raise EvalSplitError(f"--eval-split {value}: no valid held-out records; check them with genevolve-graph import-sft --data {value}")
    return EvalSplit(list(records), held_out, str(path), list(loaded.problems))


def _given(config_args: list[str]) -> dict[str, str]:
    """The ``--field value`` / ``--field=value`` pairs the user passed (field -> value)."""
    given: dict[str, str] = {}
    for i, arg in enumerate(config_args):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        if not eq:
            value = config_args[i + 1] if i + 1 < len(config_args) and not config_args[i + 1].startswith("--") else "True"
        given[name] = value
    return given


def eval_defaults(config_args: list[str], save_strategy_default: str) -> list[str]:
    """``SFTConfig`` arguments that evaluate on the checkpoint schedule and keep the best
    checkpoint by ``eval_loss``; anything the user set explicitly is left as given."""
    given = _given(config_args)
    save_strategy = given.get("save_strategy", save_strategy_default)
    load_best = given.get("load_best_model_at_end", "True").lower() in ("true", "1", "yes")
    if load_best and save_strategy == "no":
        raise EvalSplitError(
            "--eval-split keeps the best checkpoint, which needs checkpoints: drop --save_strategy no, "
            "or pass --load_best_model_at_end False to only log the held-out loss"
        )
    defaults: dict[str, str] = {
        "load_best_model_at_end": "True",
        "metric_for_best_model": "eval_loss",
        "greater_is_better": "False",
        "eval_strategy": save_strategy if save_strategy not in ("no", "best") else "epoch",
    }
    if "save_steps" in given:
        defaults["eval_steps"] = given["save_steps"]
    argv: list[str] = []
    for key, value in defaults.items():
        if key not in given:
            argv += [f"--{key}", value]
    return argv
