"""WISE (original): the world-knowledge text-to-image benchmark with its first scoring protocol.

Facts (DESIGN.md §4, notes/peers.md §3): 1000 prompts in three data files
(``cultural_common_sense.json``, ``spatio-temporal_reasoning.json``, ``natural_science.json``),
each a list of ``{"prompt_id", "Prompt", "Explanation", "Category", "Subcategory"}``; images
are named ``<prompt_id>.png``. A judge scores each image for consistency, realism and
aesthetic quality on 0–2 given the prompt and its explanation;
WiScore = (0.7 C + 0.2 R + 0.1 A) / 2. Categories come from the prompt ids (1–400 cultural,
401–567 time, 568–700 space, 701–800 biology, 801–900 physics, 901–1000 chemistry) and
overall = 0.4 cultural + 0.167 time + 0.133 space + 0.1 (biology + physics + chemistry).

WISE_Verified (binary scores, other id ranges and weights) is a different protocol whose
numbers are not comparable; this module refuses its data files rather than mixing them up.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, computed_field, field_validator

from genevolve_graph.evaluation.images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_SIDE, ImageLoadError, image_part
from genevolve_graph.evaluation.judge_cache import JudgeCache, ask_cached, rubric_version
from genevolve_graph.evaluation.judge_client import JudgeClient, JudgeError, ask_parsed, reply_model, reply_models
from genevolve_graph.evaluation.results_io import (
    EvalInputError,
    EvalLog,
    load_rows,
    resolve_path,
    write_json_atomic,
    write_text_atomic,
)
from genevolve_graph.evaluation.rubric import builtin_rubric, rubric_id
from genevolve_graph.evaluation.runner import JudgeConfigurationError, OnPlan, OnRecord, now_iso, open_log, run_samples

PROTOCOL = "WISE (original)"
PROTOCOL_NOTE = (
    "judge scores consistency, realism and aesthetic quality on 0-2; WiScore = (0.7C + 0.2R + 0.1A) / 2; "
    "overall = 0.4 cultural + 0.167 time + 0.133 space + 0.1 biology + 0.1 physics + 0.1 chemistry; "
    "the original judge was gpt-4o-2024-05-13 at temperature 0; not comparable with WISE_Verified"
)
ORIGINAL_JUDGE_MODEL = "gpt-4o-2024-05-13"
WISE_GRID: tuple[float, ...] = (0.0, 1.0, 2.0)
ORIGINAL_FILES = ("cultural_common_sense.json", "spatio-temporal_reasoning.json", "natural_science.json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
EVAL_LOG_NAME = "wise_eval.jsonl"
SUMMARY_JSON = "wise_summary.json"
SUMMARY_CSV = "wise_summary.csv"


@dataclass(frozen=True)
class WiseCategory:
    """One scoring category: its prompt-id range (inclusive) and weight in the overall."""

    name: str
    first_id: int
    last_id: int
    weight: float


CATEGORIES: tuple[WiseCategory, ...] = (
    WiseCategory("cultural", 1, 400, 0.4),
    WiseCategory("time", 401, 567, 0.167),
    WiseCategory("space", 568, 700, 0.133),
    WiseCategory("biology", 701, 800, 0.1),
    WiseCategory("physics", 801, 900, 0.1),
    WiseCategory("chemistry", 901, 1000, 0.1),
)


def category_of(prompt_id: int) -> WiseCategory:
    """The category a prompt id belongs to; ids outside 1–1000 are an error."""
    for category in CATEGORIES:
        if category.first_id <= prompt_id <= category.last_id:
            return category
    raise EvalInputError(f"WISE prompt_id {prompt_id} is outside 1-1000; WISE (original) has ids 1-1000")


def wiscore(consistency: float, realism: float, aesthetic_quality: float) -> float:
    """(0.7 C + 0.2 R + 0.1 A) / 2, in [0, 1]."""
    return (0.7 * consistency + 0.2 * realism + 0.1 * aesthetic_quality) / 2


class WisePrompt(BaseModel):
    """One WISE prompt as the data files hold it."""

    prompt_id: int
    prompt: str = Field(alias="Prompt")
    explanation: str = Field(default="", alias="Explanation")
    category: str = Field(default="", alias="Category")
    subcategory: str = Field(default="", alias="Subcategory")

    model_config = {"populate_by_name": True}


class WiseScore(BaseModel):
    """One judged WISE image."""

    consistency: float
    realism: float
    aesthetic_quality: float
    raw: str = ""

    @field_validator("consistency", "realism", "aesthetic_quality")
    @classmethod
    def _on_grid(cls, value: float) -> float:
        if value not in WISE_GRID:
            raise ValueError(f"a WISE score is 0, 1 or 2, got {value}")
        return float(value)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wiscore(self) -> float:
        """(0.7 C + 0.2 R + 0.1 A) / 2."""
        return wiscore(self.consistency, self.realism, self.aesthetic_quality)


_METRIC_RES = {
    "consistency": re.compile(r"\bconsistency\b\W{0,8}?([0-9]+(?:\.[0-9]+)?)", re.I),
    "realism": re.compile(r"\brealism\b\W{0,8}?([0-9]+(?:\.[0-9]+)?)", re.I),
    "aesthetic_quality": re.compile(r"\baesthetics?(?:[\s_]+quality)?\b\W{0,8}?([0-9]+(?:\.[0-9]+)?)", re.I),
}


def parse_wise(raw: str) -> WiseScore:
    """Read the three scores (``Consistency: n`` lines, bold or not, or the same keys in JSON).

    The last mention of each metric wins (judges sometimes reason before the final lines).
    Raises ``ValueError`` when a metric is missing or not 0, 1 or 2.
    """
    values: dict[str, float] = {}
    for key, pattern in _METRIC_RES.items():
        found = pattern.findall(raw or "")
        if not found:
            raise ValueError(f"the WISE judge output has no {key.replace('_', ' ')} score")
        value = float(found[-1])
        if value not in WISE_GRID:
            raise ValueError(f"the WISE judge gave {key.replace('_', ' ')} = {found[-1]}; it must be 0, 1 or 2")
        values[key] = value
    return WiseScore(**values, raw=raw)


def wise_messages(
    *, item: WisePrompt, image: Path, rubric: str | None = None,
    max_side: int = DEFAULT_MAX_SIDE, jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> list[dict]:
    """The chat messages of one WISE judgement: rubric as system; prompt, explanation and image as user."""
    text = f'PROMPT: "{item.prompt.strip()}"\nEXPLANATION: "{item.explanation.strip()}"\n\nThe image follows.'
    return [
        {"role": "system", "content": rubric if rubric is not None else builtin_rubric("wise")},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                image_part(image, max_side=max_side, quality=jpeg_quality),
                {"type": "text", "text": "Reply with the three score lines only."},
            ],
        },
    ]


async def judge_wise(
    client: JudgeClient, *, item: WisePrompt, image: Path, rubric: str | None = None,
    max_side: int = DEFAULT_MAX_SIDE, jpeg_quality: int = DEFAULT_JPEG_QUALITY, parse_attempts: int = 3,
) -> WiseScore:
    """Score one image for one WISE prompt. Raises :class:`JudgeError` or ``ImageLoadError``."""
    messages = wise_messages(item=item, image=image, rubric=rubric, max_side=max_side, jpeg_quality=jpeg_quality)
    return await ask_parsed(client, messages, parse_wise, attempts=parse_attempts, what="WISE judge output")


# --------------------------------------------------------------------------- data


def _data_files(source: Path, prompt_set: str) -> list[Path]:
    if source.is_file():
        files = [source]
    elif source.is_dir():
        candidates = sorted(source.glob("*.json"))
        if prompt_set == "rewrite":
            files = [p for p in candidates if "rewrite" in p.stem.lower()]
        else:
            files = [p for p in candidates if "rewrite" not in p.stem.lower() and "verified" not in p.stem.lower()]
        if not files:
            verified = [p.name for p in candidates if "verified" in p.stem.lower()]
            hint = (
                f"; {', '.join(verified)} belong to WISE_Verified, another protocol"
                if verified else f"; expected {', '.join(ORIGINAL_FILES)} (WISE_legacy/data in the WISE repository)"
            )
            raise EvalInputError(f"no WISE (original) {prompt_set} data files in {source}{hint}")
    else:
        raise EvalInputError(f"WISE data not found: {source} (pass the WISE data directory or its .json files)")
    for path in files:
        if "verified" in path.stem.lower():
            raise EvalInputError(f"{path} is WISE_Verified data, another protocol; evaluate-wise runs {PROTOCOL}")
    return files


def load_wise_prompts(sources: list[Path], *, prompt_set: str = "original") -> tuple[list[WisePrompt], list[Path]]:
    """Prompts from WISE data directories or files, sorted by id; returns (prompts, files read).

    ``prompt_set`` ``original`` reads the plain files, ``rewrite`` the ``*_rewrite.json`` ones.
    Every record is checked for the data's shape; duplicate ids are an error.
    """
    if prompt_set not in ("original", "rewrite"):
        raise EvalInputError(f"--prompt-set must be 'original' or 'rewrite', got {prompt_set!r}")
    prompts: dict[int, WisePrompt] = {}
    files: list[Path] = []
    for source in sources:
        for path in _data_files(Path(source), prompt_set):
            files.append(path)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise EvalInputError(f"WISE data file {path} is not readable JSON: {exc}") from exc
            if not isinstance(data, list):
                raise EvalInputError(f"WISE data file {path} must hold a JSON list of prompt records")
            for index, entry in enumerate(data):
                if not isinstance(entry, dict) or not isinstance(entry.get("prompt_id"), int) or not isinstance(entry.get("Prompt"), str):
                    raise EvalInputError(
                        f"{path} record {index}: expected {{\"prompt_id\": int, \"Prompt\": str, \"Explanation\", \"Category\", \"Subcategory\"}}"
                    )
                item = WisePrompt.model_validate(entry)
                category_of(item.prompt_id)
                if item.prompt_id in prompts:
                    raise EvalInputError(f"WISE prompt_id {item.prompt_id} appears twice (again in {path})")
                prompts[item.prompt_id] = item
    if not prompts:
        raise EvalInputError("the WISE data holds no prompts")
    return [prompts[k] for k in sorted(prompts)], files


def image_for(prompt_id: int, images_dir: Path) -> Path | None:
    """``<prompt_id>.png`` (or .jpg/.jpeg/.webp) in ``images_dir``."""
    for suffix in IMAGE_SUFFIXES:
        candidate = images_dir / f"{prompt_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def images_from_results(results: Path) -> dict[int, tuple[Path | None, str]]:
    """prompt_id -> (image, reason if none) from stage-2 results whose ``prompt_id`` (or integer ``id``) is the WISE id."""
    rows = load_rows(results)
    out: dict[int, tuple[Path | None, str]] = {}
    for index, row in enumerate(rows):
        key = row.get("prompt_id", row.get("id"))
        try:
            pid = int(key)
        except (TypeError, ValueError):
            raise EvalInputError(f"{results} row {index + 1}: needs an integer 'prompt_id' (or 'id') to match WISE prompts") from None
        if row.get("success") is False:
            out[pid] = (None, f"render_failed: {row.get('render_error') or 'no error message'}")
            continue
        path, why = resolve_path(row.get("output_path"), [results.parent, Path.cwd()])
        out[pid] = (path, "" if path else f"missing_generated_image: {why}")
    return out


# --------------------------------------------------------------------------- summary


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def summarize_wise_group(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and mean scores of one set of WISE records (means over scored images)."""
    scored = [r["scores"] for r in records if r.get("status") == "scored" and isinstance(r.get("scores"), dict)]
    out: dict[str, Any] = {"count": len(records), "scored": len(scored), "missing_or_failed": len(records) - len(scored)}
    for key in ("consistency", "realism", "aesthetic_quality"):
        out[key] = _r(_mean([float(s[key]) for s in scored]))
    mean_wiscore = _mean([wiscore(float(s["consistency"]), float(s["realism"]), float(s["aesthetic_quality"])) for s in scored])
    out["wiscore"] = _r(mean_wiscore)
    out["wiscore_missing_zero"] = _r(mean_wiscore * len(scored) / len(records)) if mean_wiscore is not None else 0.0
    return out


def build_wise_summary(records: list[dict[str, Any]], **header: Any) -> dict[str, Any]:
    """``wise_summary.json``: per category and subcategory, and the weighted overall.

    ``overall`` needs scored images in all six categories (a subset of WISE has no
    comparable overall); ``overall_partial`` renormalises the weights over the categories
    that have scores, for smoke runs.
    """
    summary: dict[str, Any] = {"protocol": PROTOCOL, "protocol_note": PROTOCOL_NOTE, **header}
    by_category: dict[str, Any] = {}
    for category in CATEGORIES:
        group = [r for r in records if r.get("category") == category.name]
        by_category[category.name] = {**summarize_wise_group(group), "weight": category.weight,
                                      "prompt_ids": f"{category.first_id}-{category.last_id}"}
    summary["by_category"] = by_category
    subgroups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        subgroups.setdefault(str(record.get("subcategory") or "unknown"), []).append(record)
    summary["by_subcategory"] = {name: summarize_wise_group(subgroups[name]) for name in sorted(subgroups)}
    present = [c for c in CATEGORIES if by_category[c.name]["wiscore"] is not None]
    complete = len(present) == len(CATEGORIES)
    summary["overall"] = _r(sum(c.weight * by_category[c.name]["wiscore"] for c in CATEGORIES)) if complete else None
    summary["overall_missing_zero"] = (
        _r(sum(c.weight * by_category[c.name]["wiscore_missing_zero"] for c in CATEGORIES)) if complete else None
    )
    weight = sum(c.weight for c in present)
    summary["overall_partial"] = _r(sum(c.weight * by_category[c.name]["wiscore"] for c in present) / weight) if present else None
    summary["categories_without_scores"] = [c.name for c in CATEGORIES if c not in present]
    summary["all"] = summarize_wise_group(records)
    summary["missing"] = {str(r["prompt_id"]): r.get("error") or "" for r in records if r.get("status") == "missing"}
    summary["failed"] = {str(r["prompt_id"]): r.get("error") or "" for r in records if r.get("status") == "failed"}
    return summary


def wise_summary_csv(summary: dict[str, Any]) -> str:
    """``wise_summary.csv``: overall, then one row per category and subcategory."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = ("count", "scored", "missing_or_failed", "consistency", "realism", "aesthetic_quality", "wiscore", "wiscore_missing_zero")
    writer.writerow(["split", "group", *cols, "weight"])

    def fmt(value: Any) -> Any:
        return "" if value is None else (f"{value:.4f}" if isinstance(value, float) else value)

    overall = dict(summary["all"])
    overall["wiscore"] = summary["overall"] if summary["overall"] is not None else summary["overall_partial"]
    overall["wiscore_missing_zero"] = summary["overall_missing_zero"]
    writer.writerow(["overall", "weighted" if summary["overall"] is not None else "weighted_partial", *(fmt(overall.get(c)) for c in cols), ""])
    for name, metrics in summary["by_category"].items():
        writer.writerow(["category", name, *(fmt(metrics.get(c)) for c in cols), metrics["weight"]])
    for name, metrics in summary["by_subcategory"].items():
        writer.writerow(["subcategory", name, *(fmt(metrics.get(c)) for c in cols), ""])
    return buf.getvalue()


# --------------------------------------------------------------------------- run


@dataclass
class WiseOptions:
    """Everything ``genevolve-graph evaluate-wise`` decides besides the judge client."""

    data: list[Path]
    out_dir: Path
    images_dir: Path | None = None
    results: Path | None = None
    prompt_set: str = "original"
    max_workers: int = 8
    resume: bool = False
    overwrite: bool = False
    rubric: str | None = None
    rubric_source: str = "builtin:wise"
    max_side: int = DEFAULT_MAX_SIDE
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    parse_attempts: int = 3
    cache: JudgeCache | None = None
    """Judge replies by (benchmark, item, image bytes, judge model, rubric version); None = no cache."""


async def evaluate_wise(
    client: JudgeClient, opts: WiseOptions, *, on_record: OnRecord | None = None, on_plan: OnPlan | None = None
) -> dict[str, Any]:
    """Judge one image per WISE prompt and write ``wise_eval.jsonl``, ``wise_summary.json`` and
    ``wise_summary.csv`` into ``opts.out_dir``. Returns the summary.

    Images come from ``opts.images_dir`` (``<prompt_id>.png``) or from stage-2 results
    (``opts.results``); a prompt without an image counts as missing.
    """
    if (opts.images_dir is None) == (opts.results is None):
        raise EvalInputError("pass exactly one of --images DIR or --results FILE")
    if opts.images_dir is not None and not Path(opts.images_dir).is_dir():
        raise EvalInputError(f"--images {opts.images_dir} is not a directory")
    prompts, files = load_wise_prompts(opts.data, prompt_set=opts.prompt_set)
    from_results = images_from_results(Path(opts.results).resolve()) if opts.results is not None else None
    out_dir = Path(opts.out_dir).resolve()
    log = EvalLog(out_dir / EVAL_LOG_NAME)
    existing = open_log(log, resume=opts.resume, overwrite=opts.overwrite)
    rubric = opts.rubric if opts.rubric is not None else builtin_rubric("wise")
    version = rubric_version(rubric, "wise-v1")

    async def judge_one(sid: str, item: WisePrompt) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": sid,
            "prompt_id": item.prompt_id,
            "category": category_of(item.prompt_id).name,
            "subcategory": item.subcategory,
            "prompt": item.prompt,
            "image": None,
            "status": "missing",
            "scores": None,
            "raw": None,
            "judge_model": client.model,
            "error": None,
        }
        if from_results is not None:
            image, why = from_results.get(item.prompt_id, (None, "missing_generated_image: no result row for this prompt_id"))
        else:
            image = image_for(item.prompt_id, Path(opts.images_dir))  # type: ignore[arg-type]
            why = "" if image else f"missing_generated_image: no {item.prompt_id}.png in {opts.images_dir}"
        if image is None:
            record.update(error=why, evaluated_at=now_iso())
            return record
        record["image"] = str(image)
        try:
            messages = await asyncio.to_thread(
                wise_messages, item=item, image=image, rubric=rubric, max_side=opts.max_side, jpeg_quality=opts.jpeg_quality
            )
        except ImageLoadError as exc:
            record.update(error=f"unreadable_image: {exc}", evaluated_at=now_iso())
            return record
        try:
            key = {"benchmark": f"wise-{opts.prompt_set}", "item": sid, "images": [image], "rubric_version": version,
                   "prompt": f"{item.prompt}\n{item.explanation}", "view": f"max_side={opts.max_side};jpeg_quality={opts.jpeg_quality}"}
            score, cached = await ask_cached(client, opts.cache, key, messages, parse_wise, attempts=opts.parse_attempts,
                                             what="WISE judge output")
        except JudgeError as exc:
            if exc.is_configuration_error:
                raise JudgeConfigurationError(str(exc)) from exc
            record.update(status="failed", error=f"judge_failed: {exc}", evaluated_at=now_iso())
            return record
        scores = {"consistency": score.consistency, "realism": score.realism,
                  "aesthetic_quality": score.aesthetic_quality, "wiscore": score.wiscore}
        record.update(judge_reply_model=None if cached else reply_model(), status="scored", scores=scores, raw=score.raw, cached=cached, evaluated_at=now_iso())
        return record

    items = [(str(p.prompt_id), p) for p in prompts]
    todo = [(sid, p) for sid, p in items if existing.get(sid, {}).get("status") != "scored"]
    if on_plan is not None:
        on_plan(len(todo), len(items) - len(todo))
    new = await run_samples(todo, judge_one, log, max_workers=opts.max_workers, on_record=on_record)
    latest = {**existing, **{r["id"]: r for r in new}}
    records = [latest[sid] for sid, _ in items]
    log.compact(records)
    summary = build_wise_summary(
        records,
        judge_model=client.model,
        temperature=client.temperature,
        original_judge_model=ORIGINAL_JUDGE_MODEL,
        prompt_set=opts.prompt_set,
        data=[str(f) for f in files],
        rubric={**rubric_id(rubric, opts.rubric_source), "version": version},
        cache=opts.cache.stats() if opts.cache else None,
        created_at=now_iso(),
    )
    summary["judge_reply_models"] = reply_models(records)  # beside judge_model: what actually answered
    write_json_atomic(out_dir / SUMMARY_JSON, summary)
    write_text_atomic(out_dir / SUMMARY_CSV, wise_summary_csv(summary))
    return summary
