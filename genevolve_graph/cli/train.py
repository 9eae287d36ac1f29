"""``genevolve-graph train grpo --config FILE [--field value ...]``: GRPO + SDL, TRL-style configuration.

``cli.app`` calls :func:`register` with its Typer app. Bad configuration, data or model
paths end with one line on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from genevolve_graph.cli.train_group import get_train_app


def summary(trainer) -> dict:
    """What ``train grpo`` prints at the end (JSON): steps, rewards, guides, evaluation, best checkpoint."""
    history = trainer.state.log_history
    train = [h for h in history if "reward" in h and "loss" in h]
    reward_keys = sorted({k for h in train for k in h if k == "reward" or (k.startswith("rewards/") and k.endswith("/mean"))})
    rewards = {k: {"first": train[0].get(k), "last": train[-1].get(k)} for k in reward_keys} if train else {}
    evals = [{"step": h["step"], "kscore": h["eval/kscore"], "failed_share": h.get("eval/kscore_failed_share")}
             for h in history if "eval/kscore" in h]
    buffer = trainer.experience_buffer
    added = sum(h.get("sdl/guides_added", 0.0) for h in history)
    hits = [h["sdl/guide_hit_rate"] for h in history if "sdl/guide_hit_rate" in h]
    return {
        "steps": trainer.state.global_step,
        "rewards": rewards,
        "guides": {"in_buffer": len(buffer) if buffer is not None else 0, "added": added,
                   "buffer": str(buffer.path) if buffer is not None and buffer.path is not None else None,
                   "mean_hit_rate": sum(hits) / len(hits) if hits else None},
        "eval": evals,
        "best_metric": trainer.state.best_metric,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "model": str(trainer.args.output_dir),
    }


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``train grpo`` to ``app`` (creating the ``train`` group if needed)."""
    train = get_train_app(app)

    @train.command("grpo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def grpo(
        ctx: typer.Context,
        config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Flat YAML config in TRL's style (see docs/training.md).")] = None,
        max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Same as --max_steps.")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in the output folder.")] = False,
        ablation: Annotated[Optional[str], typer.Option("--ablation", help="Run one variant of the config's 'ablations:' (see docs/training.md).")] = None,
        dump_config: Annotated[bool, typer.Option("--dump-config", help="Print the resolved configuration (every effective field, absolute paths) and exit.")] = False,
    ) -> None:
        """Train the policy with GRPO plus SDL on rendered, judged tool rollouts.

        Any GRPOConfig/SDLConfig, ModelConfig (model_name_or_path, use_peft, lora_r, ...) or
        GenEvolveArguments field can be given as --field_name VALUE and overrides the file
        (e.g. --learning_rate 1e-6 --num_generations 6 --use_peft --lora_r 64).
        """
        try:
            from genevolve_graph.training.config import ConfigError
            from genevolve_graph.training.data import DataError
            from genevolve_graph.training.grpo_args import parse_grpo_args
        except ImportError as exc:  # pragma: no cover - the train extra is missing
            raise _fail(f"training needs the 'train' extra ({exc.name} is missing): pip install 'genevolve-graph[train]'") from None
        argv = list(ctx.args) + (["--max_steps", str(max_steps)] if max_steps else [])
        try:
            run = parse_grpo_args(argv, config, ablation=ablation)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
        if run.deprecated_layout:
            typer.echo(
                f"note: {config} uses the nested layout (model:, data:, grpo: ... sections), which is deprecated; "
                "train grpo reads one flat TRL-style file now: run with --dump-config to print the equivalent",
                err=True,
            )
        if dump_config:
            import yaml

            typer.echo(yaml.safe_dump(run.resolved(), sort_keys=False), nl=False)
            return
        from genevolve_graph.training.checkpoints import CheckpointError, resolve_checkpoint

        try:  # TRL's field (a checkpoint folder, or true/last); --resume is the newest one, if any
            checkpoint = resolve_checkpoint(run.args.resume_from_checkpoint, run.args.output_dir)
        except CheckpointError as exc:
            raise _fail(str(exc)) from None
        if checkpoint is None and resume:
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(run.args.output_dir) if Path(run.args.output_dir).is_dir() else None
            if checkpoint is None:
                typer.echo(f"note: no checkpoint in {run.args.output_dir}; starting from the beginning", err=True)
        from genevolve_graph.training.reporting import missing_reporter

        problem = missing_reporter(run.args.report_to)
        if problem:
            raise _fail(problem)
        from genevolve_graph.generators.base import RenderError

        try:
            from genevolve_graph.training.launch import build_grpo_trainer

            trainer = build_grpo_trainer(run)
        except ImportError as exc:
            raise _fail(f"training needs the 'train' extra ({exc.name} is missing): pip install 'genevolve-graph[train]'") from None
        except (ConfigError, DataError, OSError, ValueError, RenderError) as exc:
            # bad paths, unknown renderer or backend options, unset key variables: one line, exit 2
            raise _fail(str(exc)) from None
        if checkpoint is not None:
            typer.echo(f"resuming from {checkpoint} (step, optimizer, RNG and experience buffer)", err=True)
        trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model(trainer.args.output_dir)
        buffer = trainer.experience_buffer
        guides = f", {len(buffer)} guides in {buffer.path}" if buffer is not None and buffer.path is not None else ""
        typer.echo(f"trained {trainer.state.global_step} steps; model saved to {trainer.args.output_dir}{guides}")
        import json

        typer.echo(json.dumps(summary(trainer), default=str))
