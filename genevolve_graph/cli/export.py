"""Commands ``export``, ``import-sft`` and ``train sft``.

Wire with ``register(app)`` (listed in ``cli.COMMAND_MODULES``). Heavy imports (datasets,
torch, TRL) happen inside the commands, so ``genevolve-graph --help`` stays quick.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from genevolve_graph.cli.common import trace_database_inputs

from genevolve_graph.cli.train_group import get_train_app


def _fail(message: str) -> None:
    from genevolve_graph.cli.common import fail

    fail(message)


def _dataset_dir_for(out: Path) -> Path:
    return out.with_suffix("") if out.suffix else out.with_name(out.name + "_dataset")


def _check_export_paths(out: Path, *, format: str, checkpoint: str | None, eval_file: Optional[Path],
                        dataset_dir: Optional[Path]) -> None:
    """--out and the trl dataset folder must not be (or hold) the trace database or --eval."""
    from genevolve_graph.safety.file_guard import OutputOverwritesInput, check_outputs, check_replaced_folder

    inputs = [("--checkpoint", Path(checkpoint).expanduser() if checkpoint else None), ("--eval", eval_file)]
    try:
        check_outputs([("--out", out)], inputs + trace_database_inputs())
        if format == "trl":
            folder = (dataset_dir or _dataset_dir_for(out)).expanduser()
            check_replaced_folder("--dataset-dir", folder, inputs + [("--out", out)])
            saved = (folder / "dataset_info.json").is_file() or (folder / "state.json").is_file()
            if folder.is_dir() and any(folder.iterdir()) and not saved:
                _fail(f"--dataset-dir {folder} holds files that are not a saved dataset, and the trl export replaces that folder; "
                      "pass a new or empty folder with --dataset-dir")
            if folder.exists() and not folder.is_dir():
                _fail(f"--dataset-dir {folder} is a file; pass a folder for the trl dataset")
    except OutputOverwritesInput as exc:
        _fail(str(exc))


def export(
    checkpoint: str = typer.Option(..., "--checkpoint", help="sqlite:///PATH or postgresql://... holding the recorded runs."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write."),
    format: str = typer.Option("sft", "--format", help="sft (GenEvolve-Data-SFT records) | trl (TRL conversational dataset)."),
    experiment: Optional[str] = typer.Option(None, help="Only threads tagged with this experiment."),
    thread: list[str] = typer.Option([], "--thread", help="Only these thread ids (repeat the option)."),
    images_dir: Optional[Path] = typer.Option(None, help="Where reference images are copied (sft; default: OUT's folder/images)."),
    image_root: list[Path] = typer.Option([], "--image-root", help="A folder the runs' reference images may be read from, besides the trace database's folder, the cache and the bundled images (repeat; e.g. the --image-dir of the runs)."),
    dataset_dir: Optional[Path] = typer.Option(None, help="Where the trl dataset is saved (default: OUT without its suffix)."),
    termination: list[str] = typer.Option(["answer"], "--termination", help="Kept termination reasons (repeat; default: answer)."),
    any_termination: bool = typer.Option(False, "--any-termination", help="Keep every termination reason."),
    min_rounds: Optional[int] = typer.Option(None, help="Minimum policy rounds."),
    max_rounds: Optional[int] = typer.Option(None, help="Maximum policy rounds."),
    eval: Optional[Path] = typer.Option(None, "--eval", help="Evaluation results (results_eval.jsonl) with per-sample overall scores."),
    min_overall: Optional[float] = typer.Option(None, help="Minimum overall score (needs --eval)."),
    dedupe: bool = typer.Option(True, "--dedupe/--no-dedupe", help="One trajectory per prompt (the best-scored, else the earliest)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary."),
) -> None:
    """Export finished recorded threads as training data (SFT records or a TRL dataset)."""
    from genevolve_graph.persistence import CheckpointURLError, open_checkpointer_sync, parse_url
    from genevolve_graph.training.export import (
        FORMATS,
        TERMINATIONS,
        ExportError,
        ExportFilters,
        ExportReport,
        ScoreTable,
        default_image_roots,
        export_threads,
        write_trl_dataset,
    )
    from genevolve_graph.training.sft_data import JsonlWriter

    if format not in FORMATS:
        _fail(f"unknown format {format!r} (--format); choose sft or trl")
    try:
        kind, target = parse_url(checkpoint)
    except CheckpointURLError as exc:
        _fail(f"{exc} (--checkpoint)")
    if kind == "memory":
        _fail("--checkpoint memory holds no recorded runs; pass the sqlite:///PATH or postgresql://... the runs used")
    if kind == "sqlite" and not Path(target).expanduser().is_file():
        _fail(f"checkpoint database {target} does not exist (--checkpoint); pass the trace file of your runs, e.g. sqlite:///genevolve-out/trace.sqlite")
    from genevolve_graph.cli.common import check_checkpoint_url

    check_checkpoint_url(checkpoint)
    bad = [t for t in termination if t not in TERMINATIONS]
    if bad:
        _fail(f"unknown termination {bad[0]!r} (--termination); choose from {', '.join(TERMINATIONS)}")
    if min_overall is not None and eval is None:
        _fail("--min-overall needs --eval results_eval.jsonl with the per-sample scores")
    if min_rounds is not None and max_rounds is not None and min_rounds > max_rounds:
        _fail(f"--min-rounds {min_rounds} is above --max-rounds {max_rounds}")
    if out.exists() and out.is_dir():
        _fail(f"--out {out} is a folder; pass a file name such as {out / 'sft.jsonl'}")
    _check_export_paths(out.expanduser(), format=format, checkpoint=target if kind == "sqlite" else None, eval_file=eval,
                        dataset_dir=dataset_dir)
    try:
        scores = ScoreTable.load(eval) if eval is not None else None
    except ExportError as exc:
        _fail(str(exc))
    filters = ExportFilters(
        terminations=None if any_termination else tuple(dict.fromkeys(termination)),
        min_rounds=min_rounds,
        max_rounds=max_rounds,
        min_overall=min_overall,
        dedupe=dedupe,
    )
    out = out.expanduser()
    images = (images_dir or out.parent / "images").expanduser() if format == "sft" else None
    if images is not None and images.exists() and not images.is_dir():
        _fail(f"--images-dir {images} is a file; pass a folder for the copied reference images")
    report = ExportReport()

    def on_problem(thread_id: str, problem: str) -> None:
        if not quiet:
            typer.echo(f"skipped thread {thread_id}: {problem}", err=True)

    import sqlite3

    try:
        with open_checkpointer_sync(checkpoint) as saver, JsonlWriter(out) as writer:
            for record in export_threads(
                saver,
                experiment=experiment,
                thread_ids=thread or None,
                format=format,  # type: ignore[arg-type]
                filters=filters,
                scores=scores,
                images_dir=images,
                data_root=out.parent,
                report=report,
                on_problem=on_problem,
                image_roots=default_image_roots(Path(target) if kind == "sqlite" else None) + [r.expanduser().resolve() for r in image_root],
            ):
                if format == "sft":
                    writer.write(record.to_json())
                else:
                    row = record.trl_row()
                    writer.write(row if row["tools"] else {"messages": row["messages"]})
    except sqlite3.DatabaseError as exc:  # damage past what the opening check reads
        _fail(f"the checkpoint database {target} is damaged ({exc}); restore it from a copy, or export the threads another database holds")
    except OSError as exc:  # a full disk, a read-only folder: the images written so far stay valid
        where = exc.filename or out
        _fail(f"cannot write {where} ({exc.strerror or exc}); free space or pass another --out / --images-dir, "
              f"then export again ({report.exported} record(s) were written to {out})")
    typer.echo(report.summary())
    typer.echo(f"records: {out}")
    if format == "sft" and images is not None:
        typer.echo(f"images: {images}")
    if format == "trl":
        target_dir = (dataset_dir or _dataset_dir_for(out)).expanduser()
        write_trl_dataset(out, target_dir)
        typer.echo(f"dataset: {target_dir} (datasets.load_from_disk)")
    if report.exported == 0:
        typer.echo("error: no thread was exported; check --checkpoint, --experiment and the filters", err=True)
        raise typer.Exit(1)


def import_sft(
    data: Path = typer.Option(..., "--data", help="Local copy of GenEvolve-Data-SFT: a folder of JSONL/JSON/parquet records, or one file."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the valid records here as JSONL (their images copied into images/ beside it, so the data set names nothing outside its folder)."),
    report_file: Optional[Path] = typer.Option(None, "--report", help="Write every problem as JSONL {where, problem}."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary."),
) -> None:
    """Read and validate SFT records; report bad ones (and skip them)."""
    from genevolve_graph.training.sft_data import JsonlWriter, SFTDataError, load_sft

    from genevolve_graph.safety.file_guard import OutputOverwritesInput, check_outputs

    try:
        result = load_sft(data)
    except SFTDataError as exc:
        _fail(f"{exc} (--data)")
    try:  # the record files are read by now, but --out and --report must not replace them
        check_outputs([("--out", out), ("--report", report_file)],
                      [("--data", data)] + [("--data", f) for f in result.files] + trace_database_inputs())
    except OutputOverwritesInput as exc:
        _fail(str(exc))
    kept = result.records
    if out is not None:  # the images travel with the records: the imported data set names nothing outside its folder
        kept = _copy_record_images(result, out.expanduser().parent)
    if not quiet:
        for where, problem in result.problems:
            typer.echo(f"skipped {where}: {problem}", err=True)
    bad_records = len({where for where, _ in result.problems})
    typer.echo(
        f"{len(kept)} valid record(s), {bad_records} skipped, from {len(result.files) - len(result.ignored_files)} file(s) under {result.root}"
        + (f" ({len(result.ignored_files)} JSON file(s) without records ignored)" if result.ignored_files else "")
    )
    if report_file is not None:
        with JsonlWriter(report_file.expanduser()) as writer:
            for where, problem in result.problems:
                writer.write({"where": where, "problem": problem})
    if out is not None:
        out = out.expanduser()
        with JsonlWriter(out) as writer:
            for record in kept:
                writer.write(record.to_json())
        typer.echo(f"records: {out}")
    if not kept:
        raise typer.Exit(1)


def _copy_record_images(result, folder: Path) -> list:
    """The valid records with their images copied into ``folder/images`` (content-addressed,
    each decoded under the image caps first), paths relative to ``folder``. A record whose
    image cannot be copied is dropped, and its reason added to ``result.problems``."""
    from genevolve_graph.training.export import ImageCopier, MissingImage

    copier = ImageCopier(folder / "images", folder)
    kept = []
    for loaded in result.records:
        try:
            images = [copier.copy(str(result.root / image)) for image in loaded.record.images]
        except MissingImage as exc:
            result.problems.append((loaded.where, f"image {exc}"))
            continue
        kept.append(loaded.record.model_copy(update={"images": images}))
    return kept


def train_sft_command(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="Exported or imported records: a JSONL file, a data folder, or a saved trl dataset."),
    model: str = typer.Option(..., "--model", help="Local Hugging Face model folder or hub id (causal LM or VLM)."),
    out: Path = typer.Option(..., "--out", help="Output folder for checkpoints and the final model."),
    freeze_vision: bool = typer.Option(True, "--freeze-vision/--train-vision", help="Freeze the vision tower of a VLM."),
    eval_split: Optional[str] = typer.Option(
        None, "--eval-split", metavar="FRACTION_OR_FILE",
        help="Held-out data: a fraction of the prompts of --data (e.g. 0.1) or a file/folder of records. Logs eval_loss on the "
        "checkpoint schedule and saves the checkpoint with the lowest eval_loss as the final model.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not list skipped records."),
) -> None:
    """SFT with TRL's SFTTrainer, loss on the assistant turns only.

    Any further option is an SFTConfig field, e.g. --learning_rate 1e-5 --num_train_epochs 2
    --per_device_train_batch_size 1 --gradient_accumulation_steps 8 --max_length 16384, or one of
    TRL's ModelConfig LoRA flags: --use_peft --lora_r 16 --lora_alpha 32 --lora_dropout 0.05
    --lora_target_modules q_proj v_proj (default: all linear layers).
    """
    from genevolve_graph.training.sft import SFTOptions, SFTSetupError, train_sft
    from genevolve_graph.training.sft_data import SFTDataError

    from genevolve_graph.safety.file_guard import OutputOverwritesInput, check_outputs

    try:  # the trained model is saved into --out: it must not be the base model's folder
        check_outputs([("--out", out)], [("--model", model), ("--data", data)] + trace_database_inputs())
    except OutputOverwritesInput as exc:
        _fail(str(exc))
    options = SFTOptions(
        data=data.expanduser(), model=model, out=out.expanduser(), freeze_vision=freeze_vision, config_args=list(ctx.args),
        eval_split=eval_split,
    )
    try:
        trainer, loaded = train_sft(options)
    except SFTDataError as exc:
        _fail(f"{exc} (--data)")
    except SFTSetupError as exc:
        _fail(str(exc))
    if not quiet:
        for where, problem in loaded.problems:
            typer.echo(f"skipped {where}: {problem}", err=True)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {"records": len(loaded.records), "skipped": len({w for w, _ in loaded.problems}), "steps": trainer.state.global_step,
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None, "model": str(options.out)}
    if eval_split is not None:
        eval_losses = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
        summary.update({"train_records": len(trainer.train_dataset), "eval_records": len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
                        "last_eval_loss": eval_losses[-1] if eval_losses else None, "best_eval_loss": trainer.state.best_metric,
                        "best_checkpoint": trainer.state.best_model_checkpoint})
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    """Add ``export``, ``import-sft`` and ``train sft`` to the CLI."""
    app.command("export")(export)
    app.command("import-sft")(import_sft)
    get_train_app(app).command(
        "sft", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(train_sft_command)
