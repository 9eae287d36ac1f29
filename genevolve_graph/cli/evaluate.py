"""The evaluation commands of the ``genevolve-graph`` CLI: ``evaluate``, ``evaluate-wise``, ``report``.

``cli.app`` calls :func:`register` with its Typer app. Bad input ends with one line on
stderr and exit code 2; a judge endpoint that rejects the key or model stops the run the
same way, keeping every record already written so that ``--resume`` continues it.
"""

from __future__ import annotations

from genevolve_graph.util import event_loop
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from genevolve_graph.cli.common import trace_database_inputs

# The judge stack (openai, PIL, pydantic models) is imported inside the commands so that
# registering them keeps `genevolve-graph --help` quick.
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MAX_SIDE = 4096  # = images.DEFAULT_MAX_SIDE (checked by a test)
DEFAULT_JPEG_QUALITY = 100  # = images.DEFAULT_JPEG_QUALITY

JudgeModel = Annotated[str, typer.Option("--judge-model", envvar="GENEVOLVE_JUDGE_MODEL",
                                         help="Judge model name at the endpoint (the paper: gemini-3.1-pro-preview).")]
JudgeBaseUrl = Annotated[str, typer.Option("--judge-base-url", envvar="GENEVOLVE_JUDGE_BASE_URL",
                                           help="OpenAI-compatible base URL, e.g. http://host:8000/v1.")]
JudgeApiKey = Annotated[str | None, typer.Option("--judge-api-key", envvar="GENEVOLVE_JUDGE_API_KEY",
                                                 help="API key (default: OPENAI_API_KEY, else 'EMPTY').", show_default=False)]
MaxWorkers = Annotated[int, typer.Option("--max-workers", min=1, help="Samples judged concurrently.")]
Rpm = Annotated[float, typer.Option("--rpm", min=0, help="Requests per minute across all workers and retries; 0 = no limit.")]
Resume = Annotated[bool, typer.Option("--resume", help="Keep scored samples of an existing log and judge the rest.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Discard an existing log and start again.")]
PromptFile = Annotated[Path | None, typer.Option("--judge-prompt-file", help="Use this rubric (system prompt) instead of the built-in one.")]
MaxRetries = Annotated[int, typer.Option("--max-retries", min=0, help="Retries per request on 429, 5xx and timeouts.")]
Timeout = Annotated[float, typer.Option("--timeout", min=1, help="Seconds per request.")]
MaxSide = Annotated[int, typer.Option("--max-side", min=64, help="Long-side cap of images sent to the judge, in pixels.")]
JpegQuality = Annotated[int, typer.Option("--jpeg-quality", min=1, max=100, help="JPEG quality of images sent to the judge.")]
JudgeCachePath = Annotated[Path | None, typer.Option("--judge-cache", help="SQLite file of judge replies to reuse and extend (default: OUT/judge_cache.sqlite).")]
NoJudgeCache = Annotated[bool, typer.Option("--no-judge-cache", help="Ask the judge for every item, even when a stored reply fits.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _run(coro_factory: Callable[[], Any]) -> Any:
    """Run an evaluation coroutine, turning input and configuration errors into one line + exit 2."""
    from genevolve_graph.evaluation.results_io import EvalInputError
    from genevolve_graph.evaluation.runner import JudgeConfigurationError

    try:
        return event_loop.run(coro_factory())
    except (EvalInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except JudgeConfigurationError as exc:
        raise _fail(f"{exc}; check --judge-base-url, --judge-api-key and --judge-model, then rerun with --resume") from None


def _check_outputs(out_dir: Path, names: tuple[str, ...], inputs: list[tuple[str, Path | None]]) -> None:
    """The files an evaluation writes into ``out_dir`` must not be any of its inputs."""
    from genevolve_graph.safety.file_guard import OutputOverwritesInput, check_outputs

    try:
        check_outputs([("--out-dir", Path(out_dir).expanduser() / name) for name in names], inputs + trace_database_inputs())
    except OutputOverwritesInput as exc:
        raise _fail(str(exc)) from None


def _rubric(path: Path | None, builtin: str) -> tuple[str | None, str]:
    from genevolve_graph.evaluation.rubric import rubric_from_file

    if path is None:
        return None, f"builtin:{builtin}"
    try:
        return rubric_from_file(path), str(path.resolve())
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _progress(label: str) -> tuple[Callable[[int, int], None], Callable[[dict[str, Any]], None], Callable[[], None]]:
    """Callbacks that draw a rich progress bar on stderr and print every failed sample."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        disable=not sys.stderr.isatty())
    state: dict[str, Any] = {}

    def on_plan(todo: int, skipped: int) -> None:
        if skipped:
            console.print(f"resuming: {skipped} samples already scored, {todo} to judge", highlight=False)
        progress.start()
        state["task"] = progress.add_task(label, total=todo)

    def on_record(record: dict[str, Any]) -> None:
        if record.get("status") != "scored":
            console.print(f"  {record.get('id')}: {record.get('status')}: {str(record.get('error'))[:300]}",
                          soft_wrap=True, markup=False, highlight=False)
        if "task" in state:
            progress.advance(state["task"])

    return on_plan, on_record, progress.stop


def _judge_all(label: str, evaluate: Callable[..., Any], opts: Any, client: Any) -> dict[str, Any]:
    """Run one evaluation with a progress display; the client is closed however it ends."""
    on_plan, on_record, stop = _progress(label)

    async def go() -> dict[str, Any]:
        try:
            return await evaluate(client, opts, on_record=on_record, on_plan=on_plan)
        finally:
            stop()
            await client.aclose()

    return _run(go)


BENCHMARK_CHOICES = ("kscore", "knowgen", "factip", "wise")


def _cache_path(out_dir: Path, judge_cache: Path | None, disabled: bool) -> Path | None:
    """Where judge replies are cached: ``--judge-cache``, else OUT/judge_cache.sqlite; None with ``--no-judge-cache``."""
    if disabled:
        if judge_cache is not None:
            raise _fail("--judge-cache and --no-judge-cache exclude each other; pick one")
        return None
    return Path(judge_cache).expanduser() if judge_cache else Path(out_dir).expanduser() / "judge_cache.sqlite"


def _evaluate_wise(*, data: list[Path], out_dir: Path, judge_model: str, images: Path | None, results: Path | None,
                   prompt_set: str, judge_base_url: str, judge_api_key: str | None, max_workers: int, rpm: float,
                   resume: bool, overwrite: bool, judge_prompt_file: Path | None, max_retries: int, timeout: float,
                   max_tokens: int | None, max_side: int, jpeg_quality: int, cache_path: Path | None) -> None:
    """WISE with the original protocol (``evaluate --benchmark wise`` and ``evaluate-wise``)."""
    from genevolve_graph.evaluation.judge_cache import JudgeCache
    from genevolve_graph.evaluation.judge_client import JudgeClient
    from genevolve_graph.evaluation.wise import EVAL_LOG_NAME, PROTOCOL, SUMMARY_CSV, SUMMARY_JSON, WiseOptions, evaluate_wise

    _check_outputs(out_dir, (EVAL_LOG_NAME, SUMMARY_JSON, SUMMARY_CSV),
                   [("--data", d) for d in data] + [("--results", results), ("--judge-prompt-file", judge_prompt_file)])
    if cache_path is not None:
        _check_outputs(cache_path.parent, (cache_path.name,), [("--data", d) for d in data] + [("--results", results)])
    rubric, rubric_source = _rubric(judge_prompt_file, "wise")
    cache = JudgeCache(cache_path) if cache_path is not None else None
    opts = WiseOptions(
        data=list(data), out_dir=out_dir, images_dir=images, results=results, prompt_set=prompt_set,
        max_workers=max_workers, resume=resume, overwrite=overwrite, rubric=rubric, rubric_source=rubric_source,
        max_side=max_side, jpeg_quality=jpeg_quality, cache=cache,
    )
    try:
        summary = _judge_all("WISE", evaluate_wise, opts, JudgeClient(
            judge_base_url, judge_model, judge_api_key, rpm=rpm or None, max_retries=max_retries, timeout=timeout, max_tokens=max_tokens))
    finally:
        if cache is not None:
            cache.close()
    if summary["overall"] is not None:
        typer.echo(f"{PROTOCOL} overall WiScore {summary['overall']} (missing=0: {summary['overall_missing_zero']})")
    else:
        typer.echo(f"{PROTOCOL} partial WiScore {summary['overall_partial']} "
                   f"(no scores for: {', '.join(summary['categories_without_scores'])})")
    for name, metrics in summary["by_category"].items():
        typer.echo(f"  {name}: {metrics['wiscore'] if metrics['wiscore'] is not None else '–'} ({metrics['scored']}/{metrics['count']})")
    typer.echo(f"wrote {Path(out_dir) / EVAL_LOG_NAME}, {Path(out_dir) / SUMMARY_JSON}, {Path(out_dir) / SUMMARY_CSV}")


def _judge_benchmark(benchmark: str, client: Any, *, results: Path, data: Path | None, out_dir: Path | None, gt_roots: list[Path],
                     max_workers: int, resume: bool, overwrite: bool, rubric: str | None, rubric_source: str, max_side: int,
                     jpeg_quality: int, cache_path: Path | None) -> dict[str, Any]:
    """Judge stage-2 results on kscore, knowgen or factip with ``client``; the cache is closed however it ends."""
    from genevolve_graph.evaluation.judge_cache import JudgeCache

    cache = JudgeCache(cache_path) if cache_path is not None else None
    try:
        if benchmark == "kscore":
            from genevolve_graph.evaluation.runner import EvaluateOptions, evaluate_kscore_results

            opts: Any = EvaluateOptions(
                results=results, out_dir=out_dir, gt_roots=gt_roots, max_workers=max_workers, resume=resume, overwrite=overwrite,
                rubric=rubric, rubric_source=rubric_source, max_side=max_side, jpeg_quality=jpeg_quality, cache=cache,
            )
            return _judge_all("KScore", evaluate_kscore_results, opts, client)
        from genevolve_graph.evaluation.benchmark_runner import BENCHMARKS, BenchmarkOptions, evaluate_benchmark

        spec = BENCHMARKS[benchmark]
        opts = BenchmarkOptions(
            results=results, data=data, out_dir=out_dir, gt_roots=gt_roots, max_workers=max_workers, resume=resume,
            overwrite=overwrite, rubric=rubric, rubric_source=rubric_source, max_side=max_side, jpeg_quality=jpeg_quality,
            cache=cache,
        )

        async def evaluate(client: Any, opts: Any, **callbacks: Any) -> dict[str, Any]:
            return await evaluate_benchmark(client, opts, spec, **callbacks)

        return _judge_all(spec.name, evaluate, opts, client)
    finally:
        if cache is not None:
            cache.close()


def _num(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_lines(benchmark: str, summary: dict[str, Any]) -> list[str]:
    """The terminal lines of a finished evaluation: both figures (failures left out, failures as 0)."""
    a = summary["all"]
    cache = summary.get("cache") or {}
    cached = f"; {cache['hits']} judgements from the cache" if cache else ""
    head = f"judge {summary.get('judge_model')} at temperature {summary.get('temperature')}{cached}"
    if benchmark == "kscore":
        lines = [f"KScore overall {a['overall'] if a['overall'] is not None else '–'} "
                 f"(missing=0: {a['overall_missing_zero']}) over {a['scored']}/{a['count']} samples; "
                 f"{a['missing_or_failed']} missing or failed", head]
        lines += [f"  {name}: overall {m['overall'] if m['overall'] is not None else '–'} ({m['scored']}/{m['count']})"
                  for name, m in summary["by_eval_type"].items()]
        return lines
    if benchmark == "knowgen":
        lines = [f"KnowGen overall {_num(a['overall'])} (failures left out; counted as 0: {_num(a['overall_missing_zero'])}) "
                 f"over {a['scored']}/{a['count']} items; {a['missing_or_failed']} missing or failed", head]
        lines += [f"  {name}: overall {_num(m['overall'])} ({m['scored']}/{m['count']})" for name, m in summary["by_group"].items()]
        if summary.get("outside_groups"):
            lines.append(f"  {len(summary['outside_groups'])} items with a category outside both groups are left out of the summary")
        return lines
    lines = [f"FactIP overall {_num(a['overall'], 1)} (failures left out; counted as 0: {_num(a['overall_missing_zero'], 1)}) "
             f"over {a['scored']}/{a['count']} items; {a['missing_or_failed']} missing or failed", head]
    lines += [f"  {name}: overall {_num(m['overall'], 1)} ({m['scored']}/{m['count']})" for name, m in summary["by_category"].items()]
    return lines


def register(app: typer.Typer) -> None:
    """Add ``evaluate``, ``evaluate-wise`` and ``report`` to ``app``."""

    @app.command("evaluate")
    def evaluate_command(
        judge_model: JudgeModel,
        results: Annotated[Path | None, typer.Option("--results", help="Stage-2 results (JSONL or a JSON array); wise: optional, with prompt_id or integer id.")] = None,
        benchmark: Annotated[str, typer.Option("--benchmark", help="kscore (GenEvolve-Bench) | knowgen | factip | wise.")] = "kscore",
        data: Annotated[list[Path] | None, typer.Option("--data", help="The benchmark's own file: KnowGen-Bench.json, FactIP's test.json, WISE's data folder or files (repeatable for wise).")] = None,
        images: Annotated[Path | None, typer.Option("--images", help="wise: a directory of <prompt_id>.png images.")] = None,
        prompt_set: Annotated[str, typer.Option("--prompt-set", help="wise: 'original' prompts or the 'rewrite' ones.")] = "original",
        gt_root: Annotated[list[Path] | None, typer.Option("--gt-root", help="Root for ground-truth images (repeatable); factip: the folder of <category>/<id>/seed1.*, seed2.*.")] = None,
        judge_base_url: JudgeBaseUrl = DEFAULT_BASE_URL,
        judge_api_key: JudgeApiKey = None,
        out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Where the per-item log and the summaries go (default: beside --results).")] = None,
        max_workers: MaxWorkers = 8,
        rpm: Rpm = 0.0,
        resume: Resume = False,
        overwrite: Overwrite = False,
        judge_prompt_file: PromptFile = None,
        judge_cache: JudgeCachePath = None,
        no_judge_cache: NoJudgeCache = False,
        max_retries: MaxRetries = 5,
        timeout: Timeout = 300.0,
        max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Cap on judge reply tokens (default: the endpoint's; wise: 2000).")] = None,
        max_side: MaxSide = DEFAULT_MAX_SIDE,
        jpeg_quality: JpegQuality = DEFAULT_JPEG_QUALITY,
    ) -> None:
        """Score generated images on one benchmark: kscore (default), knowgen, factip or wise, with one judge client."""
        if benchmark not in BENCHMARK_CHOICES:
            raise _fail(f"--benchmark {benchmark!r} is not one of {', '.join(BENCHMARK_CHOICES)}")
        if resume and overwrite:
            raise _fail("--resume and --overwrite exclude each other; pick one")
        if benchmark == "wise":
            if not data:
                raise _fail("--benchmark wise needs --data (the WISE data folder or its .json files)")
            if gt_root:
                raise _fail("--benchmark wise has no ground-truth images; drop --gt-root")
            if out_dir is None:
                if results is None:
                    raise _fail("--benchmark wise needs --out-dir (or --results, beside which the outputs go)")
                out_dir = Path(results).expanduser().resolve().parent
            _evaluate_wise(data=list(data), out_dir=out_dir, judge_model=judge_model, images=images, results=results,
                           prompt_set=prompt_set, judge_base_url=judge_base_url, judge_api_key=judge_api_key,
                           max_workers=max_workers, rpm=rpm, resume=resume, overwrite=overwrite,
                           judge_prompt_file=judge_prompt_file, max_retries=max_retries, timeout=timeout,
                           max_tokens=max_tokens if max_tokens is not None else 2000, max_side=max_side, jpeg_quality=jpeg_quality,
                           cache_path=_cache_path(out_dir, judge_cache, no_judge_cache))
            return
        if results is None:
            raise _fail(f"--benchmark {benchmark} needs --results (the stage-2 results to judge)")
        if images is not None:
            raise _fail("--images is for --benchmark wise; the other benchmarks read output_path from --results")
        if data and len(data) > 1:
            raise _fail(f"--benchmark {benchmark} takes one --data file")
        data_file = data[0] if data else None
        if benchmark == "factip" and data_file is None:
            raise _fail("FactIP needs its prompt file: pass --data test.json (the ground truth is found by its categories)")
        if benchmark == "kscore" and data_file is not None:
            raise _fail("--benchmark kscore reads everything from --results (stage-2 rows carry the GenEvolve-Bench fields); drop --data")
        out = Path(out_dir).expanduser().resolve() if out_dir else Path(results).expanduser().resolve().parent
        cache_path = _cache_path(out, judge_cache, no_judge_cache)
        from genevolve_graph.evaluation.judge_client import JudgeClient

        client = JudgeClient(judge_base_url, judge_model, judge_api_key, rpm=rpm or None, max_retries=max_retries,
                             timeout=timeout, max_tokens=max_tokens)
        if benchmark == "kscore":
            from genevolve_graph.evaluation.runner import EVAL_LOG_NAME, SUMMARY_CSV, SUMMARY_JSON

            names = (EVAL_LOG_NAME, SUMMARY_JSON, SUMMARY_CSV)
        else:
            from genevolve_graph.evaluation.benchmark_runner import BENCHMARKS

            spec = BENCHMARKS[benchmark]
            names = (spec.log_name, spec.summary_json, spec.summary_csv_name)
        _check_outputs(out, names, [("--results", results), ("--data", data_file), ("--judge-prompt-file", judge_prompt_file)])
        if cache_path is not None:
            _check_outputs(cache_path.parent, (cache_path.name,), [("--results", results), ("--data", data_file)])
        rubric, rubric_source = _rubric(judge_prompt_file, "kscore" if benchmark in ("kscore", "knowgen") else benchmark)
        summary = _judge_benchmark(benchmark, client, results=results, data=data_file, out_dir=out_dir, gt_roots=list(gt_root or []),
                                   max_workers=max_workers, resume=resume, overwrite=overwrite, rubric=rubric,
                                   rubric_source=rubric_source, max_side=max_side, jpeg_quality=jpeg_quality, cache_path=cache_path)
        for line in summary_lines(benchmark, summary):
            typer.echo(line)
        typer.echo(f"wrote {', '.join(str(out / n) for n in names)}")

    @app.command("evaluate-wise")
    def evaluate_wise_command(
        data: Annotated[list[Path], typer.Option("--data", help="WISE data directory or .json file (repeatable).")],
        out_dir: Annotated[Path, typer.Option("--out-dir", help="Where wise_eval.jsonl and the summaries go.")],
        judge_model: JudgeModel,
        images: Annotated[Path | None, typer.Option("--images", help="Directory of <prompt_id>.png images.")] = None,
        results: Annotated[Path | None, typer.Option("--results", help="Stage-2 results whose prompt_id (or id) is the WISE id.")] = None,
        prompt_set: Annotated[str, typer.Option("--prompt-set", help="'original' prompts or the 'rewrite' ones.")] = "original",
        judge_base_url: JudgeBaseUrl = DEFAULT_BASE_URL,
        judge_api_key: JudgeApiKey = None,
        max_workers: MaxWorkers = 8,
        rpm: Rpm = 0.0,
        resume: Resume = False,
        overwrite: Overwrite = False,
        judge_prompt_file: PromptFile = None,
        max_retries: MaxRetries = 5,
        timeout: Timeout = 300.0,
        max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Cap on judge reply tokens (the protocol: 2000).")] = 2000,
        max_side: MaxSide = DEFAULT_MAX_SIDE,
        jpeg_quality: JpegQuality = DEFAULT_JPEG_QUALITY,
        judge_cache: JudgeCachePath = None,
        no_judge_cache: NoJudgeCache = False,
    ) -> None:
        """Score images on WISE with the original protocol (WiScore; the original judge: gpt-4o-2024-05-13).
        The same as ``evaluate --benchmark wise``."""
        if resume and overwrite:
            raise _fail("--resume and --overwrite exclude each other; pick one")
        _evaluate_wise(data=list(data), out_dir=out_dir, judge_model=judge_model, images=images, results=results,
                       prompt_set=prompt_set, judge_base_url=judge_base_url, judge_api_key=judge_api_key,
                       max_workers=max_workers, rpm=rpm, resume=resume, overwrite=overwrite,
                       judge_prompt_file=judge_prompt_file, max_retries=max_retries, timeout=timeout,
                       max_tokens=max_tokens, max_side=max_side, jpeg_quality=jpeg_quality,
                       cache_path=_cache_path(out_dir, judge_cache, no_judge_cache))

    @app.command("report")
    def report_command(
        runs: Annotated[list[Path], typer.Argument(help="Run directories (holding summary.json, knowgen_summary.json, factip_summary.json and/or wise_summary.json).")],
        out: Annotated[Path, typer.Option("--out", help="Directory for report.md and the PNG charts.")] = Path("report"),
        label: Annotated[list[str] | None, typer.Option("--label", help="Name of each run, in order (default: directory names).")] = None,
    ) -> None:
        """Compare evaluated runs side by side (KScore, KnowGen, FactIP, WISE): terminal tables with per-group and
        per-category differences from the first run, report.md and bar charts."""
        from genevolve_graph.evaluation.report import build_report
        from genevolve_graph.evaluation.results_io import EvalInputError

        from genevolve_graph.evaluation.report import CHART_FILES, SUMMARY_FILES

        _check_outputs(out, ("report.md", *CHART_FILES),
                       [("RUNS", run / name) for run in runs for name in SUMMARY_FILES] + [("RUNS", run) for run in runs])
        try:
            files = build_report(list(runs), out, labels=list(label) if label else None)
        except (EvalInputError, ValueError) as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"wrote {files.markdown} and {len(files.charts)} charts in {out}")
