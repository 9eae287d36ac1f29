"""KScore summaries, exactly as DESIGN.md §4 defines them.

For any set of samples (all, or one eval_type, category or difficulty):

- ``count``: samples in the set; ``scored``: those the judge scored; ``missing_or_failed``:
  the rest (render failed, image or ground truth missing, judge failed, not evaluated);
- faithfulness, visual_correctness, aesthetics: means over scored samples;
- text_accuracy: mean over scored samples whose text is applicable, 0.5 when none is;
- ``overall``: 0.1 F + 0.4 V + 0.4 T + 0.1 A recomputed from those means (the pooled
  aggregation), not the mean of per-sample overalls. Each mean is rounded to 4 decimals
  before combining, as the released GenEvolve evaluator does, so ``overall`` equals its
  published number to the 4th decimal; ``overall_unrounded`` combines the unrounded means;
- ``overall_missing_zero``: the same with missing and failed samples counted as 0, that is
  ``overall * scored / count``.

``overall_sample_mean`` (the mean of per-sample overalls, text N/A as 0.5) is reported
beside them because other evaluators publish that number; the two can differ.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from genevolve_graph.evaluation.kscore import DIMENSIONS, TEXT_NA_VALUE, overall_from

GROUP_FIELDS: tuple[str, ...] = ("eval_type", "category", "difficulty")
UNKNOWN_GROUP = "unknown"
PROTOCOL = "KScore (GenEvolve-Bench)"
AGGREGATION = (
    "pooled: dimension means over scored samples (text_accuracy over text-applicable samples, "
    "0.5 if none), overall = 0.1F + 0.4V + 0.4T + 0.1A of the means, each rounded to 4 decimals first "
    "(as the released evaluator; overall_unrounded without that rounding); "
    "overall_missing_zero = overall * scored / count"
)
METRIC_COLUMNS: tuple[str, ...] = (
    "count", "scored", "missing_or_failed", "text_applicable",
    *DIMENSIONS, "overall", "overall_unrounded", "overall_missing_zero", "overall_sample_mean",
)
RELEASED_MEAN_DECIMALS = 4
"""The released evaluator rounds each dimension mean to this many decimals before combining."""


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def is_scored(record: dict[str, Any]) -> bool:
    """A record the judge scored (anything else counts in missing_or_failed)."""
    return record.get("status") == "scored" and isinstance(record.get("scores"), dict)


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of one set of per-sample records (see the module docstring)."""
    records = list(records)
    scored = [r["scores"] for r in records if is_scored(r)]
    count, n_scored = len(records), len(scored)
    out: dict[str, Any] = {"count": count, "scored": n_scored, "missing_or_failed": count - n_scored}
    applicable = [float(s["text_accuracy"]) for s in scored if not s.get("text_accuracy_na")]
    out["text_applicable"] = len(applicable)
    means: dict[str, float | None] = {}
    for dim in DIMENSIONS:
        if dim == "text_accuracy":
            means[dim] = (_mean(applicable) if applicable else TEXT_NA_VALUE) if scored else None
        else:
            means[dim] = _mean([float(s[dim]) for s in scored])
        out[dim] = _r(means[dim])
    overall = overall_from(*(round(means[d], RELEASED_MEAN_DECIMALS) for d in DIMENSIONS)) if scored else None  # type: ignore[arg-type]
    unrounded = overall_from(*(means[d] for d in DIMENSIONS)) if scored else None  # type: ignore[arg-type]
    out["overall"] = _r(overall)
    out["overall_unrounded"] = _r(unrounded)
    out["overall_missing_zero"] = _r(overall * n_scored / count) if overall is not None else 0.0
    per_sample = [
        overall_from(float(s["faithfulness"]), float(s["visual_correctness"]),
                     TEXT_NA_VALUE if s.get("text_accuracy_na") else float(s["text_accuracy"]), float(s["aesthetics"]))
        for s in scored
    ]
    out["overall_sample_mean"] = _r(_mean(per_sample))
    return out


def group_value(record: dict[str, Any], field: str) -> str:
    """A record's value of ``field`` as a group name (``unknown`` when absent)."""
    value = record.get(field)
    return UNKNOWN_GROUP if value in (None, "") else str(value)


def build_summary(records: list[dict[str, Any]], **header: Any) -> dict[str, Any]:
    """``summary.json``: header fields, then all samples and each grouping, then the
    missing and failed samples with their reasons."""
    summary: dict[str, Any] = {"protocol": PROTOCOL, "aggregation": AGGREGATION, **header}
    summary["all"] = summarize(records)
    for field in GROUP_FIELDS:
        groups: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            groups.setdefault(group_value(record, field), []).append(record)
        summary[f"by_{field}"] = {name: summarize(groups[name]) for name in sorted(groups)}
    summary["missing"] = {str(r["id"]): r.get("error") or "" for r in records if r.get("status") == "missing"}
    summary["failed"] = {str(r["id"]): r.get("error") or "" for r in records if not is_scored(r) and r.get("status") != "missing"}
    return summary


def summary_csv(summary: dict[str, Any]) -> str:
    """``summary.csv``: one row for all samples, then one per group of each grouping."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["split", "group", *METRIC_COLUMNS])

    def row(split: str, group: str, metrics: dict[str, Any]) -> None:
        cells = []
        for col in METRIC_COLUMNS:
            value = metrics.get(col)
            cells.append("" if value is None else (f"{value:.4f}" if isinstance(value, float) else value))
        writer.writerow([split, group, *cells])

    row("all", "all", summary["all"])
    for field in GROUP_FIELDS:
        for name, metrics in summary.get(f"by_{field}", {}).items():
            row(field, name, metrics)
    return buf.getvalue()
