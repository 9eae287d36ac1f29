"""``genevolve-graph data build`` and ``data report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genevolve_graph.util import event_loop
from genevolve_graph.cli.common import check_credentials, check_out_folder, fail

data_app = typer.Typer(help="Build GenEvolve-style training and benchmark data from recipes.", no_args_is_help=True)


@data_app.command("build")
def build_command(
    recipes: Path = typer.Option(..., "--recipes", help="Recipe YAML (see docs/data.md; 'bundled:small' is the demo recipe)."),
    out: Path = typer.Option(..., "--out", help="The data folder: one subfolder per stage, then sft/, rl/, bench/."),
    stages: Optional[list[str]] = typer.Option(None, "--stages", help="Stages to run, comma-separated or repeated: requests, trajectories, filter, render, visual-filter, split (default: all)."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Only about N requests (enough cells for N; the first N go to the teacher)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume stages already started in --out (default); --no-resume refuses such a folder."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Checkpointer of the teacher's trajectories (default: the recipe's, else sqlite:///OUT/trajectories/trace.sqlite)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per stage."),
    retry_infra: bool = typer.Option(False, "--retry-infra", help="Run again the items recorded as infrastructure failures (endpoint, renderer or judge outages)."),
    allow_env: Optional[list[str]] = typer.Option(None, "--allow-env", help="An environment variable the recipe may read (${NAME} or api_key_env) besides GENEVOLVE_DATA_*; repeat for more."),
) -> None:
    """Run the pipeline's stages; every stage resumes and can run alone on the previous stage's output."""
    from genevolve_graph.data.batch_adapter import InputError, JournalError
    from genevolve_graph.data.pipeline import BuildOptions, build, parse_stages
    from genevolve_graph.data.recipes import RecipeError, bundled_recipe, load_recipe

    if max_samples is not None and max_samples < 1:
        fail(f"--max-samples {max_samples} is too small; pass a positive number of requests")
    check_out_folder("--out", out)
    try:
        chosen = parse_stages(stages)
        path = bundled_recipe(str(recipes).split(":", 1)[1]) if str(recipes).startswith("bundled:") else recipes
        recipe = load_recipe(path, allow_env=allow_env or ())
    except RecipeError as exc:
        fail(str(exc))
    check_recipe_credentials(recipe, chosen)
    if checkpoint is not None:
        from genevolve_graph.cli.common import check_checkpoint_url

        check_checkpoint_url(checkpoint)
        if checkpoint == "memory":
            fail("--checkpoint memory keeps nothing for the split to read; pass sqlite:///PATH or postgresql://...")
    options = BuildOptions(stages=chosen, max_samples=max_samples, resume=None if resume else False, progress=progress, checkpoint=checkpoint,
                           retry_infra=retry_infra)
    try:
        outcomes = event_loop.run(build(recipe, out, options, notify=typer.echo))
    except (RecipeError, InputError, JournalError) as exc:
        fail(str(exc))
    last = outcomes[-1] if outcomes else None
    if last is not None and not last.complete:
        run = last.run
        if run is not None and run.fatal is not None:
            typer.echo(f"error: the {last.stage} stage stopped: {type(run.fatal).__name__}: {run.fatal}; fix the cause and run the same command again", err=True)
        else:
            typer.echo(f"the {last.stage} stage is not finished ({run.remaining if run else '?'} item(s) left); run the same command again to resume", err=True)
        raise typer.Exit(last.exit_code or 1)
    if last is not None and last.stage == "split" and last.counts:
        c = last.counts
        typer.echo(f"split: sft {c['sft']}, rl {c['rl']}, bench {c['bench']} in {Path(out).expanduser().resolve()}")


@data_app.command("report")
def report_command(
    folder: Path = typer.Argument(..., help="A data folder written by 'data build'."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where funnel.md, funnel.json and funnel.png go (default: FOLDER/report)."),
) -> None:
    """Print the funnel (per stage and per drop reason); write Markdown and a funnel chart."""
    from genevolve_graph.data.report import write_report

    if not folder.is_dir() or not ((folder / "requests").is_dir() or (folder / "trajectories").is_dir()):
        fail(f"{folder} is not a data folder (no requests/ or trajectories/ inside); pass the --out of 'data build'")
    data, where = write_report(folder, out)
    for name, count in data["headline"]:
        typer.echo(f"{name:>26}: {count}")
    for stage in data["stages"]:
        reasons = ", ".join(f"{k} {v}" for k, v in stage["dropped"].items()) or "none"
        infra = ", ".join(f"{k} {v}" for k, v in stage["infra_error"].items()) or "none"
        typer.echo(f"{stage['stage']}: {stage['input']} in, {stage['kept']} kept; dropped: {reasons}; infrastructure: {infra}"
                   + (f"; {stage['pending']} pending" if stage["pending"] else ""))
    typer.echo(f"report: {where / 'funnel.md'} and {where / 'funnel.png'}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def check_recipe_credentials(recipe: object, stages: object) -> None:
    """The teacher's search backends and the ground-truth renderer need their keys before
    any stage starts (the same preflight as ``run``/``batch``)."""
    chosen = set(stages or [])
    teacher, render = getattr(recipe, "teacher"), getattr(recipe, "render")
    if not chosen or "trajectories" in chosen:
        check_credentials(search=teacher.search, image_search=teacher.image_search)
    if not chosen or "render" in chosen:
        check_credentials(renderer=render.renderer)
