"""``genevolve-graph train grpo --config FILE``: GRPO + SDL from one YAML file.

``cli.py`` calls :func:`register` with its Typer app. Bad configuration, data or model
paths end with one line on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from genevolve_graph.training.cli_app import get_train_app


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``train grpo`` to ``app`` (creating the ``train`` group if needed)."""
    train = get_train_app(app)

    @train.command("grpo")
    def grpo(
        config: Annotated[Path, typer.Option("--config", "-c", help="YAML training config (see docs/training.md).")],
        max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Override grpo.max_steps.")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in the output folder.")] = False,
    ) -> None:
        """Train the policy with GRPO plus SDL on rendered, judged tool rollouts."""
        try:
            from genevolve_graph.training.config import ConfigError, load_config
            from genevolve_graph.training.data import DataError
        except ImportError as exc:  # pragma: no cover - the train extra is missing
            raise _fail(f"training needs the 'train' extra ({exc.name} is missing): pip install 'genevolve-graph[train]'") from None
        try:
            settings = load_config(config)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
        from genevolve_graph.generators.base import RenderError

        try:
            from genevolve_graph.training.launch import build_trainer

            trainer = build_trainer(settings, **({"max_steps": max_steps} if max_steps else {}))
        except ImportError as exc:
            raise _fail(f"training needs the 'train' extra ({exc.name} is missing): pip install 'genevolve-graph[train]'") from None
        except (ConfigError, DataError, OSError, ValueError, RenderError) as exc:
            # bad paths, unknown renderer or backend options, unset key variables: one line, exit 2
            raise _fail(str(exc)) from None
        checkpoint = None
        if resume:
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(trainer.args.output_dir)
            if checkpoint is None:
                typer.echo(f"note: no checkpoint in {trainer.args.output_dir}; starting from the beginning", err=True)
        trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model(trainer.args.output_dir)
        buffer = trainer.experience_buffer
        guides = f", {len(buffer)} guides in {buffer.path}" if buffer is not None and buffer.path is not None else ""
        typer.echo(f"trained {trainer.state.global_step} steps; model saved to {trainer.args.output_dir}{guides}")
