"""The ``train`` command group, shared by every module that adds a ``train`` subcommand.

``genevolve-graph train grpo`` (this area) and ``train sft`` (another) both call
:func:`get_train_app`, which returns the existing group or creates it, so either module can
register first.
"""

from __future__ import annotations

import typer

TRAIN_HELP = "Train the policy: SFT on exported trajectories, GRPO with SDL on rendered and judged rollouts."


def get_train_app(app: typer.Typer) -> typer.Typer:
    """The ``train`` sub-app of ``app`` (created and added on first use)."""
    for group in app.registered_groups:
        if group.name == "train" and group.typer_instance is not None:
            return group.typer_instance
    train = typer.Typer(name="train", help=TRAIN_HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    app.add_typer(train, name="train")
    return train
