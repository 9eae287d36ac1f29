"""Command-line front end of the batch stages: ``batch``, ``render``, ``bench genevolve|knowgen|factip``, ``merge``.

``register(app)`` adds them to the ``genevolve-graph`` Typer app. The policy and tool
options of ``batch`` and ``bench genevolve`` are those of ``run`` (same names, defaults and
checks, through ``cli.policy_context``); they are declared once here and attached to both
commands. Errors in the input are one line on stderr with exit code 2; an interrupted
stage exits 130 (SIGINT) or 143 (SIGTERM) and says how to resume.
"""

from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from genevolve_graph.util import event_loop
from genevolve_graph.cli.common import (backend_options, builtin_help, check_checkpoint_url, check_credentials, check_option_keys, check_out_folder,
                                        check_run_outputs, check_server_reachable, fail, policy_context, sqlite_file)

# --------------------------------------------------------------------------- shared options

_POLICY_OPTIONS: list[tuple[str, Any, Any]] = [
    ("policy", Optional[str], typer.Option(None, help=builtin_help("policy", "Planner policy") + " Default: openai when an endpoint is configured, else rules.", rich_help_panel="Policy")),
    ("base_url", Optional[str], typer.Option(None, envvar=["GENEVOLVE_BASE_URL", "OPENAI_BASE_URL"], help="OpenAI-compatible endpoint of the policy (a vLLM data-parallel server scales it across GPUs).", rich_help_panel="Policy")),
    ("model", Optional[str], typer.Option(None, envvar="GENEVOLVE_MODEL", help="Model name at --base-url.", rich_help_panel="Policy")),
    ("api_key", Optional[str], typer.Option(None, help="API key for --base-url (default: OPENAI_API_KEY). Never recorded.", rich_help_panel="Policy")),
    ("protocol", str, typer.Option("genevolve", help="genevolve (text protocol of the released checkpoint) | native (OpenAI tool calling).", rich_help_panel="Policy")),
    ("temperature", float, typer.Option(0.6, help="Policy sampling temperature.", rich_help_panel="Policy")),
    ("top_p", float, typer.Option(0.9, help="Policy nucleus sampling.", rich_help_panel="Policy")),
    ("max_tokens", int, typer.Option(4096, help="Maximum tokens per policy round.", rich_help_panel="Policy")),
    ("max_rounds", int, typer.Option(11, help="Maximum policy rounds.", rich_help_panel="Policy")),
    ("max_refs", int, typer.Option(2, help="Maximum reference images in the program.", rich_help_panel="Policy")),
    ("max_tool_calls", int, typer.Option(10, help="Maximum tool calls.", rich_help_panel="Policy")),
    ("max_retries", int, typer.Option(3, help="Retries of a failed policy request (429, 5xx, timeouts) before the row ends with termination 'error'.", rich_help_panel="Policy")),
    ("retry_delay", float, typer.Option(1.0, help="First retry backoff in seconds (doubles per retry, with jitter).", rich_help_panel="Policy")),
    ("request_timeout", float, typer.Option(120.0, help="Seconds one policy request may take in all, connect to last byte (the outbound total deadline).", rich_help_panel="Policy")),
    ("search", str, typer.Option("local", help=builtin_help("search", "Text search backend"), rich_help_panel="Tools")),
    ("corpus", Optional[Path], typer.Option(None, help="JSONL corpus for --search local.", rich_help_panel="Tools")),
    ("image_search", str, typer.Option("local", help=builtin_help("image_search", "Image search backend"), rich_help_panel="Tools")),
    ("image_dir", Optional[Path], typer.Option(None, help="Captioned image folder for --image-search local.", rich_help_panel="Tools")),
    ("skills_dir", Optional[Path], typer.Option(None, help="Folder of extra or overriding skill guides.", rich_help_panel="Tools")),
    ("system_prompt_file", Optional[Path], typer.Option(None, help="Another system prompt ({tools} marks the tool block).", rich_help_panel="Policy")),
    ("checkpoint", Optional[str], typer.Option(None, help="memory | sqlite:///PATH | postgresql://... (default: sqlite:///OUT/trace.sqlite).", rich_help_panel="Run")),
    ("experiment", str, typer.Option("", help="Experiment tag in checkpoint metadata (default: the run id).", rich_help_panel="Run")),
    ("show_images", bool, typer.Option(False, "--show-images", help="Attach thumbnails of retrieved images to observations (vision policies).", rich_help_panel="Tools")),
    ("searxng_url", Optional[str], typer.Option(None, envvar="SEARXNG_URL", help="SearXNG instance for --search/--image-search searxng.", rich_help_panel="Tools")),
    ("langchain_search", Optional[str], typer.Option(None, help="module:attr of a LangChain tool or retriever for --search langchain.", rich_help_panel="Tools")),
    ("allow_host", Optional[list[str]], typer.Option(None, help="host:port exempt from the public-address rule for image downloads (repeatable).", rich_help_panel="Tools")),
    ("image_download_dir", Optional[Path], typer.Option(None, envvar="IMAGE_DOWNLOAD_DIR", help="Cache folder for downloaded images.", rich_help_panel="Tools")),
]
_POLICY_NAMES = [name for name, _, _ in _POLICY_OPTIONS]

_RENDER_OPTIONS: list[tuple[str, Any, Any]] = [
    ("renderer", str, typer.Option("preview", help=builtin_help("renderer", "Generator backend") + " bench: none skips stage 2.", rich_help_panel="Rendering")),
    ("service_url", Optional[list[str]], typer.Option(None, "--service-url", help="A render service (repeat for one per GPU or machine); sets option service_urls.", rich_help_panel="Rendering")),
    ("pipeline", Optional[str], typer.Option(None, help="Diffusers pipeline (hub id or folder); sets option pipeline.", rich_help_panel="Rendering")),
    ("render_option", Optional[list[str]], typer.Option(None, "--option", help="Backend option KEY=VALUE (repeatable; VALUE is read as JSON when it parses).", rich_help_panel="Rendering")),
    ("seed", int, typer.Option(0, help="Render seed.", rich_help_panel="Rendering")),
    ("fallback", str, typer.Option("prompt", help="Rows without a program: prompt (render the request, as the reference renderer does) | skip.", rich_help_panel="Rendering")),
]
_RENDER_NAMES = [name for name, _, _ in _RENDER_OPTIONS]
RENDER_ASSISTANT = "genevolve_render"
"""The render-only graph's id in langgraph.json (``genevolve_graph.serving.render_graph``)."""
_TOOL_OPTION: list[tuple[str, Any, Any]] = [
    ("tool_option", Optional[list[str]], typer.Option(None, "--option", help="Backend option KEY=VALUE (repeatable; VALUE is read as JSON when it parses).", rich_help_panel="Tools")),
]


def _with_options(*groups: list[tuple[str, Any, Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add shared options to a command: Typer reads ``__signature__``, so declaring them
    once keeps ``batch`` and ``bench genevolve`` in step with each other."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for group in groups for name, annotation, default in group
        ]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            return func(**kwargs)

        wrapper.__signature__ = signature.replace(parameters=own + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        del wrapper.__wrapped__  # so inspect.signature uses __signature__ and Typer's hints match
        return wrapper

    return decorate


# --------------------------------------------------------------------------- helpers


def _rollout_context(values: dict[str, Any], out: Path):
    if values.get("api_key"):
        os.environ["OPENAI_API_KEY"] = values["api_key"]
    if values["max_retries"] < 0 or values["retry_delay"] < 0 or values["request_timeout"] <= 0:
        fail("--max-retries and --retry-delay must be at least 0 and --request-timeout above 0")
    ctx = policy_context(
        policy=values["policy"], base_url=values["base_url"], model=values["model"], protocol=values["protocol"],
        temperature=values["temperature"], top_p=values["top_p"], max_tokens=values["max_tokens"],
        max_rounds=values["max_rounds"], max_refs=values["max_refs"], max_tool_calls=values["max_tool_calls"],
        search=values["search"], corpus=values["corpus"], image_search=values["image_search"], image_dir=values["image_dir"],
        skills_dir=values["skills_dir"], system_prompt_file=values["system_prompt_file"], renderer="none",
        output_dir=out, experiment=values["experiment"], seed=0,
        options=backend_options(
            show_images=values["show_images"], searxng_url=values["searxng_url"], langchain_search=values["langchain_search"],
            allow_host=values["allow_host"], image_download_dir=values["image_download_dir"],
            option=values.get("tool_option") or values.get("render_option"),
        ),
    )
    check_option_keys(ctx.options, search=ctx.search, image_search=ctx.image_search, renderer=values.get("renderer") or "",
                      policy=ctx.policy)
    return ctx.with_updates(max_retries=values["max_retries"], retry_initial_delay=values["retry_delay"],
                            request_timeout=values["request_timeout"])


def _preflight(ctx: Any) -> None:
    """Fail fast when the policy endpoint cannot be reached at all (rather than recording
    every row as an error). Only a refused or timed-out connection fails; HTTP statuses
    pass (some gateways have no ``/models``)."""
    if ctx.policy != "openai":
        return
    import httpx

    from genevolve_graph.net.limits import probe

    url = ctx.base_url.rstrip("/") + "/models"
    try:  # under the outbound policy, reading no body: 10 s in all
        event_loop.run(probe(url, headers={"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY') or 'EMPTY'}"}))
    except httpx.HTTPError as exc:
        from genevolve_graph.safety.redaction import redact_text

        fail(redact_text(f"cannot reach the policy endpoint {ctx.base_url} (--base-url): {type(exc).__name__}: {exc}; start the server or fix the URL (or pass --no-preflight)"))


def _render_context(values: dict[str, Any], images: Path):
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.generators.registry import RENDERERS

    renderer = values["renderer"]
    if renderer not in RENDERERS:
        fail(f"unknown renderer {renderer!r} (--renderer); choose one of {', '.join(sorted(RENDERERS))}")
    if values["fallback"] not in ("prompt", "skip"):
        fail(f"unknown fallback {values['fallback']!r} (--fallback); choose prompt or skip")
    options = backend_options(option=values.get("render_option"), service_url=values.get("service_url"), pipeline=values.get("pipeline"))
    check_option_keys(options, renderer=renderer)
    return AgentContext(renderer=renderer, output_dir=str(images.expanduser().resolve()), seed=values["seed"], options=options)


def _make_renderer(ctx: Any) -> Any:
    """Build the renderer now, so that a misconfiguration is one clear error before any row."""
    from genevolve_graph.generators.registry import make_renderer

    try:
        return make_renderer(ctx)
    except ImportError as exc:
        fail(f"renderer {ctx.renderer!r} needs a package that is not installed ({exc}); install the extra for that backend")
    except (ValueError, RuntimeError, TypeError) as exc:
        fail(f"renderer {ctx.renderer!r}: {exc}")


def _check_concurrency(value: int, option: str) -> None:
    if value < 1:
        fail(f"{option} {value} is too small; pass a positive number of rows in flight")


def _load_rows(path: Path, *, max_samples: Optional[int], shard: Optional[str], tolerate_torn_tail: bool = False):
    from genevolve_graph.batch.rows import InputError, read_rows

    _check_max_samples(max_samples, "rows")
    try:
        rows = read_rows(path, tolerate_torn_tail=tolerate_torn_tail)
    except InputError as exc:
        fail(str(exc))
    return _select_rows(rows, max_samples=max_samples, shard=shard, source=path)


def _check_max_samples(max_samples: Optional[int], unit: str) -> None:
    if max_samples is not None and max_samples < 1:
        fail(f"--max-samples {max_samples} is too small; pass a positive number of {unit}")


def _select_rows(rows: list[Any], *, max_samples: Optional[int], shard: Optional[str], source: Path) -> list[Any]:
    """The first ``--max-samples`` rows, then ``--shard i/n`` of them (the order every stage uses)."""
    from genevolve_graph.batch.rows import InputError
    from genevolve_graph.batch.shards import parse_shard, select_shard

    try:
        shard_spec = parse_shard(shard) if shard else None
    except InputError as exc:
        fail(str(exc))
    if max_samples is not None:
        rows = rows[:max_samples]
    if shard_spec:
        rows = select_shard(rows, *shard_spec)
        if not rows:
            fail(f"--shard {shard} selects no rows of {source} ({len(rows)} rows); use fewer shards")
    return rows


def _folder_outputs(out: Path) -> list[tuple[str, Path]]:
    """The files a stage writes into its run folder (for the output-is-input check)."""
    from genevolve_graph.batch.engine import MANIFEST, RESULTS_JSON, RESULTS_JSONL

    return [("--out", out.expanduser() / name) for name in (RESULTS_JSONL, RESULTS_JSON, MANIFEST)]


def _digest(path: Path) -> str:
    from genevolve_graph.util.digest import file_sha256

    return file_sha256(path)


def _finish(report: Any, *, resume_hint: str) -> None:
    """Print the summary; exit non-zero when the stage was stopped."""
    for line in report.summary_lines():
        typer.echo(line)
    if report.fatal is not None:
        typer.echo(f"error: the {report.stage} stage stopped: {type(report.fatal).__name__}: {report.fatal}; "
                   f"fix the cause, then resume: {resume_hint}", err=True)
        raise typer.Exit(1)
    if report.interrupted is not None:
        typer.echo(f"interrupted by {report.interrupted.name}: {report.remaining} row(s) not recorded yet; "
                   f"resume with the same command: {resume_hint}", err=True)
        raise typer.Exit(report.exit_code)


def _run_rollout_stage(rows: list[Any], ctx: Any, *, out: Path, values: dict[str, Any], input_path: Path, digest: str,
                       concurrency: int, workers: int, resume: Optional[bool], retry_failed: bool, run_id: Optional[str],
                       shard: Optional[str], grace: float, progress: bool, max_samples: Optional[int], force_input: bool = False,
                       durability: str = "async", server: Optional[str] = None, assistant: str = "genevolve"):
    from genevolve_graph.batch.journal import JournalError
    from genevolve_graph.batch.rollouts import RolloutOptions, arun_rollouts, prepare_rollouts
    from genevolve_graph.batch.rows import InputError

    if values["checkpoint"]:
        check_checkpoint_url(values["checkpoint"])
    if workers < 1:
        fail(f"--workers {workers} is too small; pass 1 (one event loop) or more processes")
    if durability not in ("sync", "async", "exit"):
        fail(f"unknown durability {durability!r} (--durability); choose sync, async or exit")
    if workers > 1 and values["checkpoint"] == "memory":
        fail("--workers above 1 needs a checkpointer the processes share (sqlite:///... or postgresql://...), not memory")
    if server:
        if not server.startswith(("http://", "https://")):
            fail(f"--server {server!r} is not an http(s) URL of a LangGraph Server")
        if workers > 1 or values["checkpoint"]:
            fail("--server runs every row on the LangGraph Server, which keeps the threads: drop --workers and --checkpoint")
        try:
            import langgraph_sdk  # noqa: F401
        except ImportError:
            fail("--server needs langgraph-sdk: pip install 'genevolve-graph[studio]'")
        check_server_reachable(server)
    options = RolloutOptions(
        out_dir=out, checkpoint=values["checkpoint"], concurrency=concurrency, workers=workers, resume=resume, retry_failed=retry_failed,
        run_id=run_id, shard=shard, input_path=str(input_path.resolve()), input_digest=digest, grace=grace, progress=progress,
        extra_settings={"max_samples": max_samples, "durability": durability, "server": server}, force_input=force_input,
        durability=durability,
    )
    if server:
        options.checkpoint = server  # the server's threads are the trace; recorded as such in run.json
    try:
        folder, url = prepare_rollouts(rows, ctx, options)
    except (InputError, JournalError) as exc:
        fail(str(exc))
    if not server:  # with --server the server keeps the trace; `url` names the server
        try:
            check_checkpoint_url(url)  # the database this run settled on (a resumed folder's own trace.sqlite)
        except typer.Exit:
            folder.release()
            raise
    executor = None
    if server:
        from genevolve_graph.batch.executors import executor_for

        executor = executor_for(concurrency=concurrency, server=server, assistant=assistant,
                                api_key=os.environ.get("LANGGRAPH_API_KEY") or os.environ.get("LANGSMITH_API_KEY"),
                                durability=durability)
    return event_loop.run(arun_rollouts(rows, ctx, options, folder=folder, checkpoint_url=url, executor=executor))


def _order_like_stage1(rows: list[Any], source: Path) -> list[Any]:
    """Stage-1 results are recorded in completion order; render (and number) them in the
    order of the stage-1 input, taken from its run.json, so stage 2 and merges of render
    folders come out in benchmark order."""
    from genevolve_graph.batch.engine import MANIFEST
    from genevolve_graph.batch.journal import read_json
    from genevolve_graph.batch.rows import BatchRow

    manifest_path = source.parent / MANIFEST
    try:
        order = {key: position for position, key in read_json(manifest_path).get("rows", [])}
    except (OSError, ValueError, TypeError, AttributeError):
        return rows
    if not order:
        return rows
    tail = max(order.values(), default=0) + 1
    placed = [BatchRow(key=r.key, position=order.get(r.key, tail + r.position), data=r.data) for r in rows]
    return sorted(placed, key=lambda r: r.position)


def _server_executor(server: str, *, concurrency: int, assistant: str, durability: Optional[str] = None) -> Any:
    """The ``ServerExecutor`` for ``--server``, after checking the URL and that langgraph-sdk is there."""
    if not server.startswith(("http://", "https://")):
        fail(f"--server {server!r} is not an http(s) URL of a LangGraph Server")
    try:
        import langgraph_sdk  # noqa: F401
    except ImportError:
        fail("--server needs langgraph-sdk: pip install 'genevolve-graph[studio]'")
    check_server_reachable(server)
    from genevolve_graph.batch.executors import executor_for

    return executor_for(concurrency=concurrency, server=server, assistant=assistant,
                        api_key=os.environ.get("LANGGRAPH_API_KEY") or os.environ.get("LANGSMITH_API_KEY"), durability=durability)


def _run_render_stage(rows: list[Any], values: dict[str, Any], ctx: Any, renderer: Any, *, out: Path, input_path: Path,
                      digest: str, concurrency: int, resume: Optional[bool], grace: float, progress: bool, force_input: bool = False,
                      server: Optional[str] = None, assistant: str = "genevolve_render", server_output_dir: Optional[str] = None):
    from genevolve_graph.batch.journal import JournalError
    from genevolve_graph.batch.renders import RenderOptions, arun_renders, prepare_renders
    from genevolve_graph.batch.rows import InputError

    executor = _server_executor(server, concurrency=concurrency, assistant=assistant) if server else None
    extra = {"server": server, "assistant": assistant, "server_output_dir": server_output_dir} if server else {}
    options = RenderOptions(out_dir=out, concurrency=concurrency, resume=resume, fallback=values["fallback"],
                            input_path=str(input_path.resolve()), input_digest=digest, grace=grace, progress=progress,
                            force_input=force_input, extra_settings=extra, server_url=server or "",
                            server_output_dir=server_output_dir or "")
    try:
        folder = prepare_renders(rows, ctx, options)
    except (InputError, JournalError) as exc:
        fail(str(exc))
    return event_loop.run(arun_renders(rows, ctx, options, folder=folder, renderer=renderer, executor=executor))


# --------------------------------------------------------------------------- commands


@_with_options(_POLICY_OPTIONS, _TOOL_OPTION)
def batch(
    input: Path = typer.Option(..., "--input", help="JSONL or JSON array of rows with 'question' or 'prompt' (GenEvolve-Bench rows work as they are)."),
    out: Path = typer.Option(..., "--out", help="Run folder: results.jsonl, results.json, run.json, trace.sqlite."),
    concurrency: int = typer.Option(16, help="Trajectories in flight at once (on asyncio, no thread per prompt).", rich_help_panel="Run"),
    workers: int = typer.Option(1, help="Processes sharing --concurrency, each with its own event loop (for fast endpoints where one CPU core is the limit).", rich_help_panel="Run"),
    durability: str = typer.Option("async", help="When checkpoints are written: sync (before the next step), async (while it runs) or exit (once, at the end: no per-step trace). See docs/batch.md for what a SIGKILL can lose in each.", rich_help_panel="Run"),
    server: Optional[str] = typer.Option(None, "--server", help="URL of a LangGraph Server running this graph: every row becomes a background run there (one thread per row, found again on resume). See docs/batch.md.", rich_help_panel="Run"),
    assistant: str = typer.Option("genevolve", help="Assistant or graph id on --server.", rich_help_panel="Run"),
    max_samples: Optional[int] = typer.Option(None, help="Only the first K rows of the input.", rich_help_panel="Run"),
    shard: Optional[str] = typer.Option(None, help="i/n: run only shard i of n (rows i, i+n, ...), for several machines; join with 'merge'.", rich_help_panel="Run"),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="Skip recorded rows and continue interrupted ones (default: on when --out holds a run).", rich_help_panel="Run"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run again, on fresh threads, the rows recorded with termination 'error'.", rich_help_panel="Run"),
    run_id: Optional[str] = typer.Option(None, help="Run id used in thread ids (default: a new one, kept in run.json).", rich_help_panel="Run"),
    force_input: bool = typer.Option(False, "--force-input", help="Continue a run folder that was started on another input (the inputs are listed in run.json).", rich_help_panel="Run"),
    grace: float = typer.Option(30.0, help="Seconds rows in flight get to finish after Ctrl-C / SIGTERM before they are cancelled.", rich_help_panel="Run"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar.", rich_help_panel="Run"),
    preflight: bool = typer.Option(True, "--preflight/--no-preflight", help="Check that the policy endpoint answers before starting.", rich_help_panel="Run"),
    **values: Any,
) -> None:
    """Stage 1: run the agent on every row of --input and record the programs (resumable)."""
    _check_concurrency(concurrency, "--concurrency")
    check_out_folder("--out", out)
    checkpoint_file = sqlite_file(values["checkpoint"]) if values["checkpoint"] else None
    check_run_outputs(_folder_outputs(out) + [("--checkpoint", checkpoint_file or out.expanduser() / "trace.sqlite")],
                      [("--input", input), ("--corpus", values["corpus"]), ("--system-prompt-file", values["system_prompt_file"])])
    rows = _load_rows(input, max_samples=max_samples, shard=shard)
    ctx = _rollout_context(values, out)
    if not server:  # with --server the backends and their keys are the server's
        check_credentials(search=ctx.search, image_search=ctx.image_search)
    if preflight and not server:  # with --server the policy endpoint is the server's to reach
        _preflight(ctx)
    report = _run_rollout_stage(rows, ctx, out=out, values=values, input_path=input, digest=_digest(input),
                                concurrency=concurrency, workers=workers, resume=resume, retry_failed=retry_failed,
                                run_id=run_id, shard=shard, grace=grace, progress=progress, max_samples=max_samples,
                                force_input=force_input, durability=durability, server=server, assistant=assistant)
    _finish(report, resume_hint=f"genevolve-graph batch --input {input} --out {out} (with the same options)")


@_with_options(_RENDER_OPTIONS)
def render(
    input: Path = typer.Option(..., "--input", help="Stage-1 results: DIR/results.jsonl (or results.json, or the folder)."),
    out: Path = typer.Option(..., "--out", help="Render folder: images/<id>.png, results.jsonl, results.json, run.json."),
    concurrency: int = typer.Option(4, help="Renders in flight at once.", rich_help_panel="Run"),
    max_samples: Optional[int] = typer.Option(None, help="Only the first K rows of the input.", rich_help_panel="Run"),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="Skip rows already rendered (default: on when --out holds a run).", rich_help_panel="Run"),
    force_input: bool = typer.Option(False, "--force-input", help="Continue a run folder that was started on another input (the inputs are listed in run.json).", rich_help_panel="Run"),
    grace: float = typer.Option(30.0, help="Seconds renders in flight get to finish after Ctrl-C / SIGTERM.", rich_help_panel="Run"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar.", rich_help_panel="Run"),
    server: Optional[str] = typer.Option(None, "--server", help="URL of a LangGraph Server serving the render graph: every row becomes a background run there and the images are written on the server. See docs/batch.md.", rich_help_panel="Run"),
    assistant: str = typer.Option(RENDER_ASSISTANT, help="Assistant or graph id of the render graph on --server.", rich_help_panel="Run"),
    server_output_dir: Optional[str] = typer.Option(None, "--server-output-dir", help="With --server: the image folder on the server, inside its renders folder (GENEVOLVE_RENDERS_DIR on the server; default: that folder). Images go to DIR/<row's thread>/<id>.png there.", rich_help_panel="Run"),
    **values: Any,
) -> None:
    """Stage 2: render the programs of a stage-1 run into images named by row id (resumable)."""
    _check_concurrency(concurrency, "--concurrency")
    check_out_folder("--out", out)
    ctx = _render_context(values, out / "images")
    if not server:
        check_credentials(renderer=ctx.renderer)
    if server_output_dir and not server:
        fail("--server-output-dir names a folder on a LangGraph Server: pass --server too, or drop it")
    renderer = None if server else _make_renderer(ctx)  # on a server, the server builds the renderer
    source = input.expanduser()
    if source.is_dir():
        candidates = [source / "results.jsonl", source / "results.json"]
        source = next((c for c in candidates if c.is_file()), candidates[0])
    check_run_outputs(_folder_outputs(out), [("--input", source)])
    rows = _load_rows(source, max_samples=None, shard=None, tolerate_torn_tail=source.suffix == ".jsonl")
    rows = _order_like_stage1(rows, source)
    if max_samples is not None:
        if max_samples < 1:
            fail(f"--max-samples {max_samples} is too small; pass a positive number of rows")
        rows = rows[:max_samples]
    report = _run_render_stage(rows, values, ctx, renderer, out=out, input_path=source, digest=_digest(source), concurrency=concurrency,
                               resume=resume, grace=grace, progress=progress, force_input=force_input, server=server,
                               assistant=assistant, server_output_dir=server_output_dir)
    _finish(report, resume_hint=f"genevolve-graph render --input {input} --out {out} (with the same options)")


bench_app = typer.Typer(help="Run a benchmark end to end: rollouts, then rendering, into one run folder.", no_args_is_help=True)


_BENCH_RUN_OPTIONS: list[tuple[str, Any, Any]] = [
    ("concurrency", int, typer.Option(16, help="Trajectories in flight at once.", rich_help_panel="Run")),
    ("workers", int, typer.Option(1, help="Processes sharing --concurrency for stage 1, each with its own event loop.", rich_help_panel="Run")),
    ("durability", str, typer.Option("async", help="When checkpoints are written: sync (before the next step), async (while it runs) or exit (once, at the end: no per-step trace). See docs/batch.md for what a SIGKILL can lose in each.", rich_help_panel="Run")),
    ("server", Optional[str], typer.Option(None, "--server", help="URL of a LangGraph Server running this graph: every row becomes a background run there (one thread per row, found again on resume). See docs/batch.md.", rich_help_panel="Run")),
    ("assistant", str, typer.Option("genevolve", help="Assistant or graph id on --server.", rich_help_panel="Run")),
    ("render_assistant", str, typer.Option(RENDER_ASSISTANT, help="With --server: assistant or graph id of the render graph (stage 2 runs on the server too).", rich_help_panel="Run")),
    ("server_output_dir", Optional[str], typer.Option(None, "--server-output-dir", help="With --server: the image folder on the server, inside its renders folder (GENEVOLVE_RENDERS_DIR on the server; default: that folder). Images go to DIR/<row's thread>/<id>.png there.", rich_help_panel="Run")),
    ("render_concurrency", int, typer.Option(4, help="Renders in flight at once.", rich_help_panel="Run")),
    ("max_samples", Optional[int], typer.Option(None, help="Only the first K prompts (a smoke test).", rich_help_panel="Run")),
    ("shard", Optional[str], typer.Option(None, help="i/n: only shard i of n, for several machines; join each stage with 'merge'.", rich_help_panel="Run")),
    ("resume", Optional[bool], typer.Option(None, "--resume/--no-resume", help="Continue a run in --out (default: on when it exists).", rich_help_panel="Run")),
    ("force_input", bool, typer.Option(False, "--force-input", help="Continue a run folder that was started on another input (the inputs are listed in run.json).", rich_help_panel="Run")),
    ("retry_failed", bool, typer.Option(False, "--retry-failed", help="Run again the rollouts recorded with termination 'error'.", rich_help_panel="Run")),
    ("grace", float, typer.Option(30.0, help="Seconds rows in flight get to finish after Ctrl-C / SIGTERM.", rich_help_panel="Run")),
    ("progress", bool, typer.Option(True, "--progress/--no-progress", help="Show progress bars.", rich_help_panel="Run")),
    ("preflight", bool, typer.Option(True, "--preflight/--no-preflight", help="Check that the policy endpoint answers before starting.", rich_help_panel="Run")),
]
"""The run options every ``bench`` command shares."""

_JUDGE_OPTIONS: list[tuple[str, Any, Any]] = [
    ("evaluate", bool, typer.Option(True, "--evaluate/--no-evaluate", help="Judge the renders after stage 2 (stage 3).", rich_help_panel="Judge")),
    ("judge_model", Optional[str], typer.Option(None, "--judge-model", envvar="GENEVOLVE_JUDGE_MODEL", help="Judge model name at the judge endpoint.", rich_help_panel="Judge")),
    ("judge_base_url", str, typer.Option("https://api.openai.com/v1", "--judge-base-url", envvar="GENEVOLVE_JUDGE_BASE_URL", help="OpenAI-compatible base URL of the judge.", rich_help_panel="Judge")),
    ("judge_api_key", Optional[str], typer.Option(None, "--judge-api-key", envvar="GENEVOLVE_JUDGE_API_KEY", help="API key of the judge (default: OPENAI_API_KEY, else 'EMPTY'). Never recorded.", show_default=False, rich_help_panel="Judge")),
    ("judge_rpm", float, typer.Option(0.0, "--judge-rpm", min=0, help="Judge requests per minute across workers and retries; 0 = no limit.", rich_help_panel="Judge")),
    ("judge_max_workers", int, typer.Option(8, "--judge-max-workers", min=1, help="Items judged concurrently.", rich_help_panel="Judge")),
    ("judge_max_retries", int, typer.Option(5, "--judge-max-retries", min=0, help="Retries per judge request on 429, 5xx and timeouts.", rich_help_panel="Judge")),
    ("judge_timeout", float, typer.Option(300.0, "--judge-timeout", min=1, help="Seconds per judge request.", rich_help_panel="Judge")),
    ("judge_max_tokens", Optional[int], typer.Option(None, "--judge-max-tokens", help="Cap on judge reply tokens (default: the endpoint's).", rich_help_panel="Judge")),
    ("judge_cache", Optional[Path], typer.Option(None, "--judge-cache", help="SQLite file of judge replies to reuse (default: OUT/eval/judge_cache.sqlite).", rich_help_panel="Judge")),
]


def _bench_stages(rows: list[Any], bench_file: Path, *, out: Path, hint: str, values: dict[str, Any]) -> Optional[Path]:
    """Stage 1 into OUT/rollouts, then stage 2 into OUT/renders (resumable); returns the stage-2
    results file, or None when ``--renderer none`` stopped after stage 1. Exits on interruption."""
    from genevolve_graph.batch.rows import BatchRow

    _check_concurrency(values["concurrency"], "--concurrency")
    _check_concurrency(values["render_concurrency"], "--render-concurrency")
    max_samples, shard, server = values["max_samples"], values["shard"], values["server"]
    _check_max_samples(max_samples, "prompts")
    rows = _select_rows(rows, max_samples=max_samples, shard=shard, source=bench_file)
    if values["server_output_dir"] and not server:
        fail("--server-output-dir names a folder on a LangGraph Server: pass --server too, or drop it")
    render_ctx = renderer = None
    if values["renderer"] != "none":  # configuration errors show before any rollout
        if not server:
            check_credentials(renderer=values["renderer"])
        render_ctx = _render_context(values, out / "renders" / "images")
        renderer = None if server else _make_renderer(render_ctx)  # with --server stage 2 renders there
    ctx = _rollout_context(values, out / "rollouts")
    if not server:
        check_credentials(search=ctx.search, image_search=ctx.image_search)
    if values["preflight"] and not server:
        _preflight(ctx)
    digest = _digest(bench_file)
    report = _run_rollout_stage(rows, ctx, out=out / "rollouts", values=values, input_path=bench_file, digest=digest,
                                concurrency=values["concurrency"], workers=values["workers"], resume=values["resume"],
                                retry_failed=values["retry_failed"], run_id=None, shard=shard, grace=values["grace"],
                                progress=values["progress"], max_samples=max_samples, force_input=values["force_input"],
                                durability=values["durability"], server=server, assistant=values["assistant"])
    if report.interrupted is not None or report.fatal is not None or values["renderer"] == "none":
        _finish(report, resume_hint=hint)
        return None
    for line in report.summary_lines():
        typer.echo(line)
    stage2_rows = [BatchRow(key=row.key, position=row.position, data=report.folder.records[row.key]) for row in rows]
    rollouts_file = out / "rollouts" / "results.jsonl"
    rendered = _run_render_stage(stage2_rows, values, render_ctx, renderer, out=out / "renders", input_path=rollouts_file,
                                 digest=_digest(rollouts_file), concurrency=values["render_concurrency"], resume=values["resume"],
                                 grace=values["grace"], progress=values["progress"],
                                 force_input=True,  # stage 1 of this same run is its input by construction
                                 server=server, assistant=values["render_assistant"], server_output_dir=values["server_output_dir"])
    _finish(rendered, resume_hint=hint)
    return out / "renders" / "results.jsonl"


@_with_options(_BENCH_RUN_OPTIONS, _POLICY_OPTIONS, _RENDER_OPTIONS)
def bench_genevolve(
    data: Path = typer.Option(..., "--data", help="Local copy of the data set: the folder holding GenEvolve-Bench/test.jsonl."),
    out: Path = typer.Option(Path("genevolve-bench-run"), "--out", help="Run folder: rollouts/ (stage 1) and renders/ (stage 2)."),
    **values: Any,
) -> None:
    """GenEvolve-Bench (594 prompts): stage 1 into OUT/rollouts, then stage 2 into OUT/renders."""
    from genevolve_graph.batch.bench import read_bench
    from genevolve_graph.batch.rows import InputError

    try:
        bench_file, rows, notes = read_bench(data)
    except InputError as exc:
        fail(str(exc))
    for note in notes:
        typer.echo(note, err=True)
    hint = f"genevolve-graph bench genevolve --data {data} --out {out} (with the same options)"
    if _bench_stages(rows, bench_file, out=out, hint=hint, values=values) is not None:
        typer.echo(f"run folder: {out} (judge with the render results: {out / 'renders' / 'results.json'})")


def _bench_with_judge(benchmark: str, data: Path, out: Path, gt_root: Optional[Path], values: dict[str, Any], read: Callable[[], Any]) -> None:
    """``bench knowgen|factip``: stages 1 and 2, then the benchmark's judge into OUT/eval (all resumable)."""
    from genevolve_graph.batch.rows import InputError

    if values["evaluate"] and not values["judge_model"]:
        fail(f"bench {benchmark} judges the renders: pass --judge-model (or set GENEVOLVE_JUDGE_MODEL), or --no-evaluate to stop after stage 2")
    if gt_root is not None and not gt_root.expanduser().is_dir():
        fail(f"--gt-root {gt_root} is not a folder; pass the folder of the ground-truth images")
    try:
        bench_file, rows, notes = read()
    except InputError as exc:
        fail(str(exc))
    for note in notes:
        typer.echo(note, err=True)
    hint = f"genevolve-graph bench {benchmark} --data {data} --out {out} (with the same options)"
    stage2 = _bench_stages(rows, bench_file, out=out, hint=hint, values=values)
    if stage2 is None:
        return
    if not values["evaluate"]:
        typer.echo(f"run folder: {out}; judge later with: genevolve-graph evaluate --benchmark {benchmark} --data {bench_file} --results {stage2}")
        return
    from genevolve_graph.cli.evaluate import _judge_benchmark, summary_lines
    from genevolve_graph.evaluation.benchmark_runner import BENCHMARKS
    from genevolve_graph.evaluation.judge_client import JudgeClient

    spec = BENCHMARKS[benchmark]
    eval_dir = (out / "eval").expanduser().resolve()
    cache = Path(values["judge_cache"]).expanduser() if values["judge_cache"] else eval_dir / "judge_cache.sqlite"
    client = JudgeClient(values["judge_base_url"], values["judge_model"], values["judge_api_key"], rpm=values["judge_rpm"] or None,
                         max_retries=values["judge_max_retries"], timeout=values["judge_timeout"], max_tokens=values["judge_max_tokens"])
    summary = _judge_benchmark(benchmark, client, results=stage2, data=bench_file, out_dir=eval_dir,
                               gt_roots=[gt_root] if gt_root is not None else [], max_workers=values["judge_max_workers"],
                               resume=(eval_dir / spec.log_name).exists(), overwrite=False, rubric=None, rubric_source=f"builtin:{spec.rubric}",
                               max_side=4096, jpeg_quality=100, cache_path=cache)
    for line in summary_lines(benchmark, summary):
        typer.echo(line)
    typer.echo(f"run folder: {out}; scores in {eval_dir / spec.summary_json}")


@_with_options(_BENCH_RUN_OPTIONS, _JUDGE_OPTIONS, _POLICY_OPTIONS, _RENDER_OPTIONS)
def bench_knowgen(
    data: Path = typer.Option(..., "--data", help="Local copy of KnowGen-Bench: the folder holding KnowGen-Bench.json and its images (or the file)."),
    out: Path = typer.Option(Path("knowgen-bench-run"), "--out", help="Run folder: rollouts/ (stage 1), renders/ (stage 2), eval/ (the judge)."),
    **values: Any,
) -> None:
    """KnowGen (Gen-Searcher): stage 1, stage 2, then the KnowGen judge, into one resumable run folder."""
    from genevolve_graph.batch.bench import read_knowgen_bench

    _bench_with_judge("knowgen", data, out, None, values, lambda: read_knowgen_bench(data))


@_with_options(_BENCH_RUN_OPTIONS, _JUDGE_OPTIONS, _POLICY_OPTIONS, _RENDER_OPTIONS)
def bench_factip(
    data: Path = typer.Option(..., "--data", help="Local copy of FactIP: the folder holding test.json (or the file)."),
    out: Path = typer.Option(Path("factip-bench-run"), "--out", help="Run folder: rollouts/ (stage 1), renders/ (stage 2), eval/ (the judge)."),
    split: str = typer.Option("test", "--split", help="test (test.json) or mini (test_mini.json)."),
    gt_root: Optional[Path] = typer.Option(None, "--gt-root", help="Folder of the ground truth, <category>/<id>/seed1.* and seed2.* (default: the data folder)."),
    **values: Any,
) -> None:
    """FactIP (Unify-Agent): stage 1, stage 2, then the FactIP judge, into one resumable run folder."""
    from genevolve_graph.batch.bench import read_factip_bench

    if split not in ("test", "mini"):
        fail(f"--split {split!r} is not test or mini")
    root = gt_root if gt_root is not None else (data if data.expanduser().is_dir() else data.expanduser().parent)
    _bench_with_judge("factip", data, out, root, values, lambda: read_factip_bench(data, split))


def merge(
    folders: list[Path] = typer.Argument(..., help="The --out folders of the shards (all rollouts, or all renders)."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged results.jsonl, results.json and run.json."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="Merge even when some shards are missing."),
) -> None:
    """Join the outputs of 'batch --shard i/n' runs (or of 'render' over them) into one run folder."""
    from genevolve_graph.batch.journal import JournalError
    from genevolve_graph.batch.rows import InputError
    from genevolve_graph.batch.shards import merge_runs

    check_run_outputs(_folder_outputs(out), [("FOLDERS", shard_file) for folder in folders for _, shard_file in _folder_outputs(folder)])
    try:
        result = merge_runs(folders, out, allow_partial=allow_partial)
    except (InputError, JournalError) as exc:
        fail(str(exc))
    for note in result.notes:
        typer.echo(note, err=True)
    typer.echo(f"merged {len(result.shards)} folders: {result.rows} rows -> {out / 'results.jsonl'} and {out / 'results.json'}")


def register(app: typer.Typer) -> None:
    """Add ``batch``, ``render``, ``bench genevolve`` and ``merge`` to the app (once per app)."""
    if getattr(app, "_genevolve_batch_registered", False):
        return
    app._genevolve_batch_registered = True  # type: ignore[attr-defined]
    app.command("batch")(batch)
    app.command("render")(render)
    bench_app.command("genevolve")(bench_genevolve)
    bench_app.command("knowgen")(bench_knowgen)
    bench_app.command("factip")(bench_factip)
    app.add_typer(bench_app, name="bench")
    app.command("merge")(merge)


__all__ = ["register", "batch", "render", "bench_genevolve", "bench_knowgen", "bench_factip", "merge"]
