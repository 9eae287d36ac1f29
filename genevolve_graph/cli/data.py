"""``genevolve-graph data build`` and ``data report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from genevolve_graph.util import event_loop
from genevolve_graph.cli.batch import _BENCH_RUN_OPTIONS, _server_executor, _with_options
from genevolve_graph.cli.common import check_credentials, check_out_folder, fail

data_app = typer.Typer(help="Build GenEvolve-style training and benchmark data from recipes.", no_args_is_help=True)

_SERVER_OPTIONS = [option for option in _BENCH_RUN_OPTIONS if option[0] in ("server", "assistant", "render_assistant", "server_output_dir")]
"""``--server``, ``--assistant``, ``--render-assistant``, ``--server-output-dir``: those of ``bench --server``."""


@data_app.command("build")
@_with_options(_SERVER_OPTIONS)
def build_command(
    recipes: Path = typer.Option(..., "--recipes", help="Recipe YAML (see docs/data.md; 'bundled:small' is the demo recipe)."),
    out: Path = typer.Option(..., "--out", help="The data folder: one subfolder per stage, then sft/, rl/, bench/."),
    stages: Optional[list[str]] = typer.Option(None, "--stages", help="Stages to run, comma-separated or repeated: requests, trajectories, filter, render, visual-filter, split (default: all)."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Only about N requests (enough cells for N; the first N go to the teacher)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume stages already started in --out (default); --no-resume refuses such a folder."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Checkpointer of the teacher's trajectories (default: the recipe's, else sqlite:///OUT/trajectories/trace.sqlite). With --server: the database that server's checkpointer writes, which the split reads."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per stage."),
    retry_infra: bool = typer.Option(False, "--retry-infra", help="Run again the items recorded as infrastructure failures (endpoint, renderer or judge outages)."),
    allow_env: Optional[list[str]] = typer.Option(None, "--allow-env", help="An environment variable the recipe may read (${NAME} or api_key_env) besides GENEVOLVE_DATA_*; repeat for more."),
    server_root: Optional[list[Path]] = typer.Option(None, "--server-root", help="With --server: a folder of the server's files that this machine reads at the same path (a shared volume; repeatable). The reference images and renders the server's records name are read only there, in --server-output-dir, the recipe's teacher.image_dir and the bundled images.", rich_help_panel="Run"),
    **values: Any,
) -> None:
    """Run the pipeline's stages; every stage resumes and can run alone on the previous stage's output.

    With --server URL the trajectories and render stages run on that LangGraph Server, as
    'batch --server' and 'render --server' do (docs/data.md)."""
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
    server = values["server"]
    if values["server_output_dir"] and not server:
        fail("--server-output-dir names a folder on a LangGraph Server: pass --server too, or drop it")
    if server_root and not server:
        fail("--server-root names a folder shared with a LangGraph Server: pass --server too, or drop it")
    check_recipe_credentials(recipe, chosen, on_server=bool(server))
    if checkpoint is not None:
        from genevolve_graph.cli.common import check_checkpoint_url

        check_checkpoint_url(checkpoint)
        if checkpoint == "memory":
            fail("--checkpoint memory keeps nothing for the split to read; pass sqlite:///PATH or postgresql://...")
    executors: dict[str, Any] = {}
    if server:  # built as batch --server and render --server build theirs (URL, langgraph-sdk, reachable, key from the environment)
        if "trajectories" in chosen:
            executors["trajectories"] = _server_executor(server, concurrency=recipe.teacher.concurrency, assistant=values["assistant"],
                                                         durability="async")
        if "render" in chosen:
            executors["render"] = _server_executor(server, concurrency=recipe.render.concurrency, assistant=values["render_assistant"])
    options = BuildOptions(stages=chosen, max_samples=max_samples, resume=None if resume else False, progress=progress, checkpoint=checkpoint,
                           retry_infra=retry_infra, server=server or "", executors=executors,
                           server_output_dir=values["server_output_dir"] or "",
                           server_roots=tuple(str(p.expanduser().resolve()) for p in server_root or ()))
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


def check_recipe_credentials(recipe: object, stages: object, *, on_server: bool = False) -> None:
    """The teacher's search backends and the ground-truth renderer need their keys before
    any stage starts (the same preflight as ``run``/``batch``); with ``--server`` they are
    the server's."""
    if on_server:
        return
    chosen = set(stages or [])
    teacher, render = getattr(recipe, "teacher"), getattr(recipe, "render")
    if not chosen or "trajectories" in chosen:
        check_credentials(search=teacher.search, image_search=teacher.image_search)
    if not chosen or "render" in chosen:
        check_credentials(renderer=render.renderer)
