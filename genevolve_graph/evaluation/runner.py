"""Batch judging: many samples, bounded concurrency, durable per-sample records, resume.

:func:`run_samples` is the loop shared by the KScore and WISE commands: it judges the
samples that have no scored record yet, ``max_workers`` at a time, appends each record to
the log as soon as it is ready, and stops the whole run only when the endpoint rejects the
configuration (bad key, unknown model), since then every request would fail the same way.
:func:`evaluate_kscore_results` applies it to stage-2 results (DESIGN.md §4).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genevolve_graph.util.jsonl import unencodable
from genevolve_graph.evaluation.aggregate import build_summary, summary_csv
from genevolve_graph.evaluation.images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_SIDE, ImageLoadError
from genevolve_graph.evaluation.judge_cache import JudgeCache, ask_cached, rubric_version
from genevolve_graph.evaluation.judge_client import JudgeClient, JudgeError, reply_model, reply_models
from genevolve_graph.evaluation.kscore import kscore_messages, parse_kscore
from genevolve_graph.evaluation.results_io import (
    EvalInputError,
    EvalLog,
    OutsideRoot,
    benchmark_fields,
    load_rows,
    resolve_path,
    sample_ids,
    write_json_atomic,
    write_text_atomic,
)
from genevolve_graph.evaluation.rubric import builtin_rubric, rubric_id

EVAL_LOG_NAME = "results_eval.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"

OnRecord = Callable[[dict[str, Any]], None]
OnPlan = Callable[[int, int], None]
"""Called once before judging with (samples to judge, samples already scored)."""


class JudgeConfigurationError(RuntimeError):
    """The judge endpoint rejected the key, permission or model; the run stopped."""


def now_iso() -> str:
    """UTC timestamp for records."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def open_log(log: EvalLog, *, resume: bool, overwrite: bool) -> dict[str, dict[str, Any]]:
    """Existing records when resuming; a fresh log otherwise. An existing log is never
    silently thrown away: without ``resume`` or ``overwrite`` that is an error."""
    exists = log.path.exists() and log.path.stat().st_size > 0
    if exists and resume:
        return log.load()
    if exists and not overwrite:
        raise EvalInputError(f"{log.path} already exists; pass --resume to continue it or --overwrite to start again")
    log.reset()
    return {}


async def run_samples(
    items: list[tuple[str, Any]],
    judge_one: Callable[[str, Any], Awaitable[dict[str, Any]]],
    log: EvalLog,
    *,
    max_workers: int,
    on_record: OnRecord | None = None,
    max_consecutive_failures: int | None = None,
) -> list[dict[str, Any]]:
    """Judge ``items`` (id, payload) with at most ``max_workers`` in flight; each record is
    appended to ``log`` (fsynced) when it is ready. Returns the new records.

    ``judge_one`` returns a record and raises only for configuration errors, which stop the
    run after the records already finished are saved. So does a streak of judge failures
    (``status`` ``failed``) with no success in between, ``max_consecutive_failures`` long
    (default ``max(8, 2 * max_workers)``): an endpoint that is down or a rubric whose replies
    cannot be read would otherwise burn every sample's retries.
    """
    if max_workers < 1:
        raise EvalInputError(f"--max-workers must be at least 1, got {max_workers}")
    limit = max_consecutive_failures or max(8, 2 * max_workers)
    gate = asyncio.Semaphore(max_workers)
    done: list[dict[str, Any]] = []
    streak = {"failed": 0}

    async def one(sid: str, payload: Any) -> None:
        async with gate:
            record = await judge_one(sid, payload)
        log.append(record)
        done.append(record)
        if on_record is not None:
            on_record(record)
        if record.get("status") == "failed" and not str(record.get("error")).startswith("bad_input"):  # the judge's fault, not the row's
            streak["failed"] += 1
            if streak["failed"] >= limit:
                raise JudgeConfigurationError(
                    f"the judge failed {streak['failed']} samples in a row, stopping (last: {str(record.get('error'))[:300]})"
                )
        elif record.get("status") == "scored":
            streak["failed"] = 0

    tasks = [asyncio.create_task(one(sid, payload)) for sid, payload in items]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return done


def _field(row: dict[str, Any], name: str) -> Any:
    """A benchmark field, top level first, then inside ``meta`` (GenEvolve's layout)."""
    value = row.get(name)
    if value in (None, "") and isinstance(row.get("meta"), dict):
        value = row["meta"].get(name)
    return value


@dataclass
class EvaluateOptions:
    """Everything ``genevolve-graph evaluate`` decides besides the judge client."""

    results: Path
    out_dir: Path | None = None
    gt_roots: list[Path] = field(default_factory=list)
    max_workers: int = 8
    resume: bool = False
    overwrite: bool = False
    rubric: str | None = None
    rubric_source: str = "builtin:kscore"
    max_side: int = DEFAULT_MAX_SIDE
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    parse_attempts: int = 3
    cache: JudgeCache | None = None
    """Judge replies by (benchmark, item, image bytes, judge model, rubric version); None = no cache."""


async def evaluate_kscore_results(
    client: JudgeClient, opts: EvaluateOptions, *, on_record: OnRecord | None = None, on_plan: OnPlan | None = None
) -> dict[str, Any]:
    """Judge every sample of a stage-2 results file and write ``results_eval.jsonl``,
    ``summary.json`` and ``summary.csv`` into ``opts.out_dir`` (default: beside the results).

    Returns the summary. Samples that cannot be judged (render failed, image or ground truth
    missing or unreadable, judge failed) get a record with ``status`` ``missing`` or
    ``failed`` and the reason in ``error``; they count in ``missing_or_failed``.
    """
    results = Path(opts.results).resolve()
    rows = load_rows(results)
    ids = sample_ids(rows, results)
    for root in opts.gt_roots:
        if not Path(root).is_dir():
            raise EvalInputError(f"--gt-root {root} is not a directory")
    out_dir = Path(opts.out_dir).resolve() if opts.out_dir else results.parent
    log = EvalLog(out_dir / EVAL_LOG_NAME)
    existing = open_log(log, resume=opts.resume, overwrite=opts.overwrite)
    rubric = opts.rubric if opts.rubric is not None else builtin_rubric("kscore")
    version = rubric_version(rubric, "kscore-v1")
    gen_roots = [results.parent, Path.cwd()]
    # With --gt-root, relative ground truths resolve only there: falling back to the run's
    # directory could silently pair a generated image with itself.
    gt_roots = [Path(r).resolve() for r in opts.gt_roots] or [results.parent, Path.cwd()]

    async def judge_one(sid: str, row: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": sid,
            "prompt": (row.get("prompt") or row.get("question") or "").strip(),
            **{name: _field(row, name) for name in ("eval_type", "category", "difficulty")},
            "output_path": row.get("output_path"),
            "gt_image": _field(row, "gt_image"),
            "backend": row.get("backend"),
            "status": "missing",
            "scores": None,
            "rationale": None,
            "raw": None,
            "judge_model": client.model,
            "error": None,
            "item": benchmark_fields(row),  # every field of the benchmark row, kept
        }

        def stop(status: str, error: str) -> dict[str, Any]:
            record.update(status=status, error=error, evaluated_at=now_iso())
            return record

        problem = unencodable(row)
        if problem:  # it could not be sent to the judge; it fails alone
            return stop("failed", f"bad_input: {problem} cannot be encoded as UTF-8; fix that field of the results file")
        if not record["prompt"]:
            return stop("missing", "empty_prompt: the sample has neither 'prompt' nor 'question'")
        if row.get("success") is False:
            return stop("missing", f"render_failed: {row.get('render_error') or 'no error message'}")
        generated, why = resolve_path(row.get("output_path"), gen_roots)
        if generated is None:
            return stop("missing", f"missing_generated_image: {why}")
        try:  # with --gt-root, a ground truth never leaves it (no ../, absolute paths or symlinks out)
            truth, why = resolve_path(record["gt_image"], gt_roots, confine=bool(opts.gt_roots))
        except OutsideRoot as exc:
            return stop("failed", f"ground_truth_outside_gt_root: {exc}; gt_image must stay under --gt-root")
        if truth is None:
            return stop("missing", f"missing_ground_truth: {why}")
        try:
            messages = await asyncio.to_thread(
                kscore_messages, prompt=record["prompt"], generated=generated, ground_truth=truth,
                rubric=rubric, max_side=opts.max_side, jpeg_quality=opts.jpeg_quality,
            )
        except ImageLoadError as exc:
            return stop("missing", f"unreadable_image: {exc}")
        key = {"benchmark": "kscore", "item": sid, "images": [generated, truth], "rubric_version": version,
               "prompt": record["prompt"], "view": f"max_side={opts.max_side};jpeg_quality={opts.jpeg_quality}"}
        try:
            score, cached = await ask_cached(client, opts.cache, key, messages, parse_kscore, attempts=opts.parse_attempts,
                                             what="KScore judge output")
        except JudgeError as exc:
            if exc.is_configuration_error:
                raise JudgeConfigurationError(str(exc)) from exc
            return stop("failed", f"judge_failed: {exc}")
        record.update(judge_reply_model=None if cached else reply_model(), status="scored", scores=score.scores(), rationale=score.rationale, raw=score.raw, cached=cached,
                      evaluated_at=now_iso())
        return record

    todo = [(sid, row) for sid, row in zip(ids, rows, strict=True) if existing.get(sid, {}).get("status") != "scored"]
    if on_plan is not None:
        on_plan(len(todo), len(rows) - len(todo))
    new = await run_samples(todo, judge_one, log, max_workers=opts.max_workers, on_record=on_record)

    latest = {**existing, **{r["id"]: r for r in new}}
    records = []
    for sid, row in zip(ids, rows, strict=True):
        record = latest.get(sid)
        if record is None:  # pragma: no cover - every id is judged above; kept for safety
            record = {"id": sid, "status": "failed", "scores": None, "error": "not_evaluated"}
        records.append(record)
    log.compact(records)
    summary = build_summary(
        records,
        judge_model=client.model,
        temperature=client.temperature,
        results=str(results),
        rubric={**rubric_id(rubric, opts.rubric_source), "version": version},
        cache=opts.cache.stats() if opts.cache else None,
        created_at=now_iso(),
    )
    summary["judge_reply_models"] = reply_models(records)  # beside judge_model: what actually answered
    write_json_atomic(out_dir / SUMMARY_JSON, summary)
    write_text_atomic(out_dir / SUMMARY_CSV, summary_csv(summary))
    return summary
