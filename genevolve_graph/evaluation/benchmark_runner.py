"""``evaluate --benchmark knowgen|factip``: one loop for the peers' benchmarks.

An item comes from the benchmark's own file (``--data``: KnowGen's JSON array, FactIP's
id-keyed object) joined by id with our stage-2 results (``--results``), or from the
results alone when no data file is given. Every field of the benchmark row is kept in the
record's ``item``. The loop is the one the KScore command uses (:func:`runner.run_samples`:
bounded concurrency, one fsynced record per item, ``--resume`` re-judging only missing and
failed items), and every judgement goes through :func:`judge_cache.ask_cached`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genevolve_graph.evaluation import factip, knowgen
from genevolve_graph.evaluation.images import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_MAX_SIDE,
    ImageLoadError,
)
from genevolve_graph.evaluation.judge_cache import (
    JudgeCache,
    ask_cached,
    rubric_version,
)
from genevolve_graph.evaluation.judge_client import JudgeClient, JudgeError, reply_model, reply_models
from genevolve_graph.evaluation.kscore import kscore_messages
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
from genevolve_graph.evaluation.runner import (
    JudgeConfigurationError,
    OnPlan,
    OnRecord,
    now_iso,
    open_log,
    run_samples,
)
from genevolve_graph.util.jsonl import unencodable

@dataclass(frozen=True)
class Benchmark:
    """What differs between the benchmarks this loop runs."""

    name: str
    rubric: str  # the built-in rubric's name
    layout: str  # names the message template, part of the rubric version
    read_items: Callable[[Path], list[dict[str, Any]]]
    prompt_of: Callable[[dict[str, Any]], str]
    category_of: Callable[[dict[str, Any]], str | None]
    build_summary: Callable[..., dict[str, Any]]
    summary_csv: Callable[[dict[str, Any]], str]
    parse: Callable[[str], tuple[dict[str, Any], str]]

    @property
    def log_name(self) -> str:
        return f"{self.name}_eval.jsonl"

    @property
    def summary_json(self) -> str:
        return f"{self.name}_summary.json"

    @property
    def summary_csv_name(self) -> str:
        return f"{self.name}_summary.csv"


def _meta(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if value in (None, "") and isinstance(row.get("meta"), dict):
        value = row["meta"].get(name)
    return value


KNOWGEN = Benchmark(
    name=knowgen.BENCHMARK, rubric="kscore", layout="kscore-v1", read_items=knowgen.read_knowgen_items,
    prompt_of=lambda item: str(item.get("prompt") or item.get("question") or "").strip(),
    category_of=lambda item: (str(_meta(item, "category")).strip().lower() if _meta(item, "category") not in (None, "") else None),
    build_summary=knowgen.build_knowgen_summary, summary_csv=knowgen.knowgen_summary_csv, parse=knowgen.parse_knowgen,
)
FACTIP = Benchmark(
    name=factip.BENCHMARK, rubric="factip", layout="factip-v1", read_items=factip.read_factip_items,
    prompt_of=lambda item: str(item.get("image_prompt") or item.get("prompt") or "").strip(),
    category_of=lambda item: (str(item["source_category"]) if item.get("source_category") not in (None, "") else None),
    build_summary=factip.build_factip_summary, summary_csv=factip.factip_summary_csv, parse=factip.parse_factip,
)
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (KNOWGEN, FACTIP)}


@dataclass
class BenchmarkOptions:
    """Everything ``evaluate --benchmark knowgen|factip`` decides besides the judge client."""

    results: Path
    data: Path | None = None
    out_dir: Path | None = None
    gt_roots: list[Path] = field(default_factory=list)
    max_workers: int = 8
    resume: bool = False
    overwrite: bool = False
    rubric: str | None = None
    rubric_source: str | None = None
    max_side: int = DEFAULT_MAX_SIDE
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    parse_attempts: int = 3
    cache: JudgeCache | None = None


@dataclass
class _Item:
    id: str
    item: dict[str, Any]  # the benchmark row, every field kept
    result: dict[str, Any] | None  # our stage-2 row for it


def _items(bench: Benchmark, opts: BenchmarkOptions, results: Path) -> tuple[list[_Item], list[str]]:
    """The items to judge and the ids of results rows that are not in the benchmark file."""
    rows = load_rows(results)
    by_id = dict(zip(sample_ids(rows, results), rows, strict=True))
    if opts.data is None:
        return [_Item(sid, benchmark_fields(row), row) for sid, row in by_id.items()], []
    items = bench.read_items(Path(opts.data))
    seen: set[str] = set()
    out = []
    for item in items:
        sid = str(item["id"])
        if sid in seen:
            raise EvalInputError(f"{opts.data} has more than one item with id {sid!r}; ids must be unique")
        seen.add(sid)
        out.append(_Item(sid, item, by_id.get(sid)))
    return out, [sid for sid in by_id if sid not in seen]


async def evaluate_benchmark(
    client: JudgeClient, opts: BenchmarkOptions, bench: Benchmark, *, on_record: OnRecord | None = None, on_plan: OnPlan | None = None
) -> dict[str, Any]:
    """Judge every item, write ``<name>_eval.jsonl``, ``<name>_summary.json`` and ``.csv``; return the summary."""
    results = Path(opts.results).resolve()
    for root in opts.gt_roots:
        if not Path(root).is_dir():
            raise EvalInputError(f"--gt-root {root} is not a directory")
    if bench is FACTIP and opts.data is None:
        raise EvalInputError("FactIP needs its prompt file: pass --data test.json (the ground truth is found by its categories)")
    items, unknown = _items(bench, opts, results)
    out_dir = Path(opts.out_dir).resolve() if opts.out_dir else results.parent
    log = EvalLog(out_dir / bench.log_name)
    existing = open_log(log, resume=opts.resume, overwrite=opts.overwrite)
    rubric = opts.rubric if opts.rubric is not None else builtin_rubric(bench.rubric)
    version = rubric_version(rubric, bench.layout)
    view = f"max_side={opts.max_side};jpeg_quality={opts.jpeg_quality}"
    gen_roots = [results.parent, Path.cwd()]
    data_dir = Path(opts.data).resolve().parent if opts.data else None
    confine = bool(opts.gt_roots)
    gt_roots = [Path(r).resolve() for r in opts.gt_roots] or [p for p in (data_dir, results.parent, Path.cwd()) if p]

    def references(it: _Item, category: str | None) -> tuple[list[Path] | None, str]:
        if bench is FACTIP:
            for root in gt_roots:
                found, why = factip.find_ground_truth(root, category or "", it.id)
                if found:
                    return found, ""
            return None, why
        gt = _meta(it.item, "gt_image") or (_meta(it.result, "gt_image") if it.result else None)
        path, why = resolve_path(gt, gt_roots, confine=confine)
        return ([path] if path else None), why

    async def judge_one(sid: str, it: _Item) -> dict[str, Any]:
        result = it.result or {}
        prompt = bench.prompt_of(it.item) or bench.prompt_of(result)
        category = bench.category_of(it.item) or bench.category_of(result)
        record: dict[str, Any] = {
            "id": sid, "benchmark": bench.name, "prompt": prompt, "category": category,
            "output_path": result.get("output_path"), "references": None, "status": "missing", "scores": None,
            "rationale": None, "raw": None, "judge_model": client.model, "cached": False, "error": None, "item": it.item,
        }

        def stop(status: str, error: str) -> dict[str, Any]:
            record.update(status=status, error=error, evaluated_at=now_iso())
            return record

        problem = unencodable(it.item) or unencodable(result)
        if problem:
            return stop("failed", f"bad_input: {problem} cannot be encoded as UTF-8; fix that field")
        if it.result is None:
            return stop("missing", "no_result: the results file has no row with this id")
        if not prompt:
            return stop("missing", "empty_prompt: the item has no prompt")
        if result.get("success") is False:
            return stop("missing", f"render_failed: {result.get('render_error') or 'no error message'}")
        generated, why = resolve_path(result.get("output_path"), gen_roots)
        if generated is None:
            return stop("missing", f"missing_generated_image: {why}")
        try:
            refs, why = references(it, category)
        except OutsideRoot as exc:
            return stop("failed", f"ground_truth_outside_gt_root: {exc}")
        if refs is None:
            return stop("missing", f"missing_ground_truth: {why}")
        record["references"] = [str(p) for p in refs]
        try:
            if bench is FACTIP:
                messages = await asyncio.to_thread(factip.factip_messages, prompt=prompt, generated=generated, references=refs,
                                                   rubric=rubric, max_side=opts.max_side, jpeg_quality=opts.jpeg_quality)
            else:
                messages = await asyncio.to_thread(kscore_messages, prompt=prompt, generated=generated, ground_truth=refs[0],
                                                   rubric=rubric, max_side=opts.max_side, jpeg_quality=opts.jpeg_quality)
        except ImageLoadError as exc:
            return stop("missing", f"unreadable_image: {exc}")
        images = [generated, *refs] if bench is KNOWGEN else [*refs, generated]  # in the order the judge sees them
        key = {"benchmark": bench.name, "item": sid, "images": images, "rubric_version": version, "prompt": prompt, "view": view}
        raws: dict[str, str] = {}

        def parse(raw: str) -> tuple[dict[str, Any], str]:
            parsed = bench.parse(raw)
            raws["raw"] = raw
            return parsed

        try:
            (scores, rationale), cached = await ask_cached(client, opts.cache, key, messages, parse,
                                                           attempts=opts.parse_attempts, what=f"{bench.name} judge output")
        except JudgeError as exc:
            if exc.is_configuration_error:
                raise JudgeConfigurationError(str(exc)) from exc
            return stop("failed", f"judge_failed: {exc}")
        record.update(judge_reply_model=None if cached else reply_model(), status="scored", scores=scores, rationale=rationale,
                      raw=raws.get("raw"), cached=cached, evaluated_at=now_iso())
        return record

    todo = [(it.id, it) for it in items if existing.get(it.id, {}).get("status") != "scored"]
    if on_plan is not None:
        on_plan(len(todo), len(items) - len(todo))
    new = await run_samples(todo, judge_one, log, max_workers=opts.max_workers, on_record=on_record)
    latest = {**existing, **{r["id"]: r for r in new}}
    records = [latest[it.id] for it in items]
    log.compact(records)
    summary = bench.build_summary(
        records,
        judge_model=client.model,
        temperature=client.temperature,
        results=str(results),
        data=str(Path(opts.data).resolve()) if opts.data else None,
        rubric={**rubric_id(rubric, opts.rubric_source or f"builtin:{bench.rubric}"), "version": version},
        cache=opts.cache.stats() if opts.cache else None,
        results_not_in_benchmark=unknown,
        created_at=now_iso(),
    )
    summary["judge_reply_models"] = reply_models(records)  # beside judge_model: what actually answered
    write_json_atomic(out_dir / bench.summary_json, summary)
    write_text_atomic(out_dir / bench.summary_csv_name, bench.summary_csv(summary))
    return summary
