"""The ``train`` command group, shared by every training command.

Several modules add ``train`` subcommands (``train sft``, ``train grpo``) from their own
``register(app)``; whichever registers first creates the group and the others reuse it, so
the order in which ``cli.COMMAND_MODULES`` lists them does not matter.
"""

from __future__ import annotations

import typer


def get_train_app(app: typer.Typer) -> typer.Typer:
    """The ``train`` group of ``app``: the one already registered, or a new one added to it."""
    for info in app.registered_groups:
        if info.name == "train" and info.typer_instance is not None:
            return info.typer_instance
    train_app = typer.Typer(name="train", help="Train the policy (SFT, GRPO + SDL).", no_args_is_help=True)
    app.add_typer(train_app, name="train")
    return train_app
