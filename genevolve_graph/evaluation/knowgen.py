"""KnowGen (Gen-Searcher's benchmark): the KScore judge with KnowGen's own aggregation.

The judge is the KScore one (same four dimensions on {0, 0.5, 1}, same weights, Image 1 =
generated, Image 2 = ground truth; ``kscore.kscore_messages``). What differs is how a reply
becomes numbers and how numbers are combined, and both follow the released KnowGen
evaluator exactly:

- per item, each score is clipped to [0, 1] and rounded to 2 decimals (not snapped to the
  grid); ``text_accuracy_na`` (or an unreadable text score) means T = 0.5 with the flag kept;
  the item's overall is ``round(0.1 F + 0.4 V + 0.4 T + 0.1 A, 2)``;
- items are split into two category groups (science-and-knowledge, pop-culture-and-news) by
  ``meta.category`` (lower-cased); an item whose category is in neither is left out of the
  summary (and listed);
- per group, over scored items: F, V, A plain means; T the mean over items whose text is
  applicable (0.5 when none is); each mean rounded to 4 decimals; the group overall is
  ``round(0.1 F + 0.4 V + 0.4 T + 0.1 A, 4)`` of those rounded means (not the mean of item
  overalls); a group with no scored item scores 0.0 on everything;
- the headline figures are ``round((science + pop) / 2, 4)`` for each dimension and the
  overall: a macro average over the two groups.

Failed and missing items are left out of every mean, as the released script does;
``overall_missing_zero`` states the other figure (each group's overall times scored/count,
then averaged over the two groups the same way).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from genevolve_graph.evaluation.kscore import DIMENSIONS, TEXT_NA_VALUE, WEIGHTS
from genevolve_graph.evaluation.parsing import coerce_bool, recover_object
from genevolve_graph.evaluation.results_io import EvalInputError

BENCHMARK = "knowgen"
PROTOCOL = "KnowGen (Gen-Searcher)"
GROUPS: dict[str, tuple[str, ...]] = {
    "science_and_knowledge": (
        "astronomy", "biology", "chemistry", "physics", "engineering", "medicine", "industry", "architecture",
        "history", "geography", "religion", "politics", "culture", "art", "sports",
    ),
    "pop_culture_and_news": (
        "anime", "game", "film", "celebrities", "posters", "multi-subject-anime", "multi-subject-celebrities",
        "multi-subject-game", "news",
    ),
}
AGGREGATION = (
    "per item: scores clipped to [0,1], rounded to 2 dp; T = 0.5 when text is not applicable. Per group "
    "(science_and_knowledge, pop_culture_and_news), over scored items: F, V, A means, T mean over text-applicable "
    "items (0.5 if none), each rounded to 4 dp; group overall = round(0.1F + 0.4V + 0.4T + 0.1A, 4); empty group = 0.0. "
    "Headline = round((science + pop) / 2, 4) per metric. Failed items are left out; overall_missing_zero counts them "
    "as 0 (group overall x scored/count, then the same mean of the two groups)."
)
_KEYS = ("rationale", *DIMENSIONS, "text_accuracy_na")
METRICS: tuple[str, ...] = (*DIMENSIONS, "overall")
BENCH_FILE = "KnowGen-Bench.json"


def group_of(category: Any) -> str | None:
    """The group of a category name (lower-cased, trimmed), or None when it is in neither."""
    name = str(category or "").strip().lower()
    for group, members in GROUPS.items():
        if name in members:
            return group
    return None


def _clip2(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(str(value).strip().rstrip(".")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return round(min(1.0, max(0.0, number)), 2)


def item_overall(f: float, v: float, t: float, a: float) -> float:
    """KnowGen's per-item overall: round(0.1 F + 0.4 V + 0.4 T + 0.1 A, 2)."""
    return round(WEIGHTS["faithfulness"] * f + WEIGHTS["visual_correctness"] * v + WEIGHTS["text_accuracy"] * t
                 + WEIGHTS["aesthetics"] * a, 2)


def parse_knowgen(raw: str) -> tuple[dict[str, Any], str]:
    """(scores, rationale) of a KScore-rubric reply read KnowGen's way (module docstring).

    A missing F, V or A raises ``ValueError`` (the judge is asked again) where the released
    script would read it as 0.
    """
    obj = {str(k).strip().lower(): v for k, v in recover_object(raw, _KEYS).items()}
    na_value = obj.get("text_accuracy_na")
    try:
        na = coerce_bool(na_value, name="text_accuracy_na") if na_value is not None else False
    except ValueError:
        na = False
    scores: dict[str, Any] = {}
    for dim in ("faithfulness", "visual_correctness", "aesthetics"):
        if obj.get(dim) is None:
            raise ValueError(f"the judge output has no {dim!r} score")
        scores[dim] = _clip2(obj[dim], dim)
    if not na:
        try:
            scores["text_accuracy"] = _clip2(obj.get("text_accuracy"), "text_accuracy")
        except ValueError:
            na = True  # an unreadable text score counts as not applicable, as in the released script
    if na:
        scores["text_accuracy"] = TEXT_NA_VALUE
    scores["text_accuracy_na"] = na
    scores["overall"] = item_overall(scores["faithfulness"], scores["visual_correctness"], scores["text_accuracy"], scores["aesthetics"])
    return scores, str(obj.get("rationale", "")).strip()


def _scored(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["scores"] for r in records if r.get("status") == "scored" and isinstance(r.get("scores"), dict)]


def group_means(records: list[dict[str, Any]], *, empty: float | None = 0.0) -> dict[str, Any]:
    """Dimension means and overall of one set of records, KnowGen's way (4 dp). With nothing
    scored every metric is ``empty``: 0.0 for a group, as the released evaluator; a category
    (which the released evaluator does not report) shows None instead."""
    scores = _scored(records)
    out: dict[str, Any] = {"count": len(records), "scored": len(scores), "missing_or_failed": len(records) - len(scores)}
    applicable = [float(s["text_accuracy"]) for s in scores if not s.get("text_accuracy_na")]
    out["text_applicable"] = len(applicable)
    if not scores:
        out.update({m: empty for m in METRICS})
        out["overall_missing_zero"] = 0.0
        return out
    for dim in ("faithfulness", "visual_correctness", "aesthetics"):
        out[dim] = round(sum(float(s[dim]) for s in scores) / len(scores), 4)
    out["text_accuracy"] = round(sum(applicable) / len(applicable), 4) if applicable else TEXT_NA_VALUE
    out["overall"] = round(sum(WEIGHTS[d] * out[d] for d in DIMENSIONS), 4)
    out["overall_missing_zero"] = round(out["overall"] * len(scores) / len(records), 4)
    return out


def build_knowgen_summary(records: list[dict[str, Any]], **header: Any) -> dict[str, Any]:
    """``knowgen_summary.json``: the headline (macro over the two groups), each group, each category."""
    summary: dict[str, Any] = {"benchmark": BENCHMARK, "protocol": PROTOCOL, "aggregation": AGGREGATION, **header}
    by_group: dict[str, list[dict[str, Any]]] = {g: [] for g in GROUPS}
    by_category: dict[str, list[dict[str, Any]]] = {}
    outside: list[str] = []
    for record in records:
        category = str(record.get("category") or "").strip().lower()
        group = group_of(category)
        if group is None:
            outside.append(str(record["id"]))
            continue
        by_group[group].append(record)
        by_category.setdefault(category, []).append(record)
    groups = {g: group_means(by_group[g]) for g in GROUPS}
    headline: dict[str, Any] = {m: round(sum(groups[g][m] for g in GROUPS) / len(GROUPS), 4) for m in METRICS}
    headline["overall_missing_zero"] = round(sum(groups[g]["overall_missing_zero"] for g in GROUPS) / len(GROUPS), 4)
    inside = [r for g in GROUPS for r in by_group[g]]
    headline["count"] = len(inside)
    headline["scored"] = len(_scored(inside))
    headline["missing_or_failed"] = headline["count"] - headline["scored"]
    summary["all"] = headline
    summary["by_group"] = groups
    summary["by_category"] = {name: {"group": group_of(name), **group_means(by_category[name], empty=None)}
                              for name in sorted(by_category)}
    summary["empty_groups"] = [g for g in GROUPS if groups[g]["scored"] == 0]
    summary["outside_groups"] = outside
    summary["missing"] = {str(r["id"]): r.get("error") or "" for r in records if r.get("status") == "missing"}
    summary["failed"] = {str(r["id"]): r.get("error") or "" for r in records if r.get("status") == "failed"}
    return summary


def knowgen_summary_csv(summary: dict[str, Any]) -> str:
    """One row for the headline, then each group, then each category."""
    columns = ("count", "scored", "missing_or_failed", "text_applicable", *METRICS, "overall_missing_zero")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["split", "group", *columns])
    rows = [("all", "macro over groups", summary["all"])]
    rows += [("group", name, m) for name, m in summary["by_group"].items()]
    rows += [("category", name, m) for name, m in summary["by_category"].items()]
    for split, name, metrics in rows:
        writer.writerow([split, name, *("" if metrics.get(c) is None else metrics.get(c) for c in columns)])
    return buf.getvalue()


def read_knowgen_items(path: Path) -> list[dict[str, Any]]:
    """KnowGen-Bench.json: a JSON array of {id, prompt, meta: {category, difficulty}, gt_image, ...}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise EvalInputError(f"KnowGen data file not found: {path} (pass {BENCH_FILE} as --data)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalInputError(f"cannot read the KnowGen data file {path}: {exc}") from None
    if not isinstance(data, list):
        raise EvalInputError(f"{path} is not KnowGen's format (a JSON array of items with id, prompt, meta.category, gt_image)")
    items = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise EvalInputError(f"{path} item {index + 1} is not a JSON object")
        if "summary_type" in item:  # the summary rows the released evaluator appends to its output
            continue
        if item.get("id") in (None, ""):
            raise EvalInputError(f"{path} item {index + 1} has no 'id'; KnowGen items need one")
        items.append(item)
    return items
