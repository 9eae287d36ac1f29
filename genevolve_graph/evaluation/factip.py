"""FactIP (Unify-Agent's benchmark): identity-faithful images of named subjects.

The judge sees the request, then two ground-truth images of the subject, then the
generated image, and gives five whole-number scores from 0 to 10 (rubric
``rubrics/factip.md``, this project's wording). The numbers follow the released FactIP
scorer exactly:

- per item: ``overall = 0.05 clarity + 0.10 content_quality + 0.10 aesthetics +
  0.75 text_relevance_ip`` on 0..10; the judge's own ``overall_score`` is recorded but not used;
- per category (``source_category``): the mean of each metric and of the item overalls,
  times 10 (0..100; the released calculator prints 1 decimal);
- total: the mean over all scored items (micro), times 10.

Items that were not scored (no image, judge failed) are left out, as the released scorer
does; ``overall_missing_zero`` counts them as 0 (total x scored / count).

Ground truth: ``<gt-root>/<category>/<id>/seed1.*`` and ``seed2.*``. The released scorer
looks first in the agent's own ``intermediate/<id>/`` folder, where an agent run keeps the
two images it retrieved, and would then grade an image against the agent's own references;
this module never does that.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from genevolve_graph.evaluation.images import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_MAX_SIDE,
    image_part,
)
from genevolve_graph.evaluation.parsing import coerce_score, recover_object
from genevolve_graph.evaluation.results_io import EvalInputError, resolve_path
from genevolve_graph.evaluation.rubric import builtin_rubric

BENCHMARK = "factip"
PROTOCOL = "FactIP (Unify-Agent)"
METRICS: tuple[str, ...] = ("clarity", "content_quality", "aesthetics", "text_relevance_ip")
WEIGHTS: dict[str, float] = {"clarity": 0.05, "content_quality": 0.10, "aesthetics": 0.10, "text_relevance_ip": 0.75}
SCALE = 10
"""Means of 0..10 scores are reported times 10, on 0..100."""
GRID: tuple[float, ...] = tuple(float(i) for i in range(11))
GT_NAMES = ("seed1", "seed2")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
AGGREGATION = (
    "per item overall = 0.05 clarity + 0.10 content_quality + 0.10 aesthetics + 0.75 text_relevance_ip (0-10; the judge's "
    "overall_score is not used); per category: mean of each metric and of item overalls x 10 (0-100); total: mean over all "
    "scored items x 10 (micro). Failed items are left out; overall_missing_zero = total x scored / count."
)
_KEYS = (*METRICS, "overall_score", "rationale")


def item_overall(scores: dict[str, float]) -> float:
    """The weighted per-item overall on 0..10."""
    return sum(WEIGHTS[m] * float(scores[m]) for m in METRICS)


def parse_factip(raw: str) -> tuple[dict[str, Any], str]:
    """(scores, rationale) of a FactIP reply; each metric a whole number 0..10 (numbers in
    range are rounded to the nearest whole one). Raises ``ValueError`` when a metric is absent."""
    obj = {str(k).strip().lower(): v for k, v in recover_object(raw, _KEYS).items()}
    scores: dict[str, Any] = {}
    for metric in METRICS:
        if obj.get(metric) is None:
            raise ValueError(f"the judge output has no {metric!r} score")
        scores[metric] = coerce_score(obj[metric], GRID, name=metric)
    try:
        scores["judge_overall_score"] = coerce_score(obj["overall_score"], GRID, name="overall_score") if obj.get("overall_score") is not None else None
    except ValueError:
        scores["judge_overall_score"] = None
    scores["overall"] = item_overall(scores)
    return scores, str(obj.get("rationale", "")).strip()


def factip_messages(*, prompt: str, generated: Path, references: list[Path], rubric: str | None = None,
                    max_side: int = DEFAULT_MAX_SIDE, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> list[dict]:
    """Rubric as system; the request, Reference A, Reference B, then the generated image.

    Raises ``ImageLoadError`` naming the file when an image is missing or unreadable.
    """
    if len(references) != 2:
        raise ValueError(f"FactIP shows two ground-truth images, got {len(references)}")
    ref_a, ref_b = (image_part(p, max_side=max_side, quality=jpeg_quality) for p in references)
    generated_part = image_part(generated, max_side=max_side, quality=jpeg_quality)
    return [
        {"role": "system", "content": rubric if rubric is not None else builtin_rubric("factip")},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"Request (what the image must show):\n{prompt.strip()}\n\nReference A (ground truth):"},
                ref_a,
                {"type": "text", "text": "Reference B (ground truth):"},
                ref_b,
                {"type": "text", "text": "The generated image, the one you grade:"},
                generated_part,
                {"type": "text", "text": "Reply with the JSON object only: clarity, content_quality, aesthetics, "
                                         "text_relevance_ip, overall_score (whole numbers 0-10) and rationale."},
            ],
        },
    ]


def find_ground_truth(root: Path, category: str, item_id: str) -> tuple[list[Path] | None, str]:
    """``(seed1, seed2)`` under ``root/<category>/<id>/`` (or ``root/<id>/``), else (None, why).

    Raises ``OutsideRoot`` when the id or category would lead out of ``root``.
    """
    found: list[Path] = []
    for name in GT_NAMES:
        hit = None
        for folder in ([f"{category}/{item_id}"] if category else []) + [item_id]:
            for suffix in IMAGE_SUFFIXES:
                path, _ = resolve_path(f"{folder}/{name}{suffix}", [root], confine=True)
                if path is not None:
                    hit = path
                    break
            if hit:
                break
        if hit is None:
            where = f"{root}/{category}/{item_id}/" if category else f"{root}/{item_id}/"
            return None, f"no {name}.png/.jpg/.jpeg/.webp in {where}"
        found.append(hit)
    return found, ""


def _r(value: float) -> float:
    return round(value, 6)


def category_means(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Count, scored, and each metric's mean and the overall mean times 10 (None when nothing is scored)."""
    scores = [r["scores"] for r in records if r.get("status") == "scored" and isinstance(r.get("scores"), dict)]
    out: dict[str, Any] = {"count": len(records), "scored": len(scores), "missing_or_failed": len(records) - len(scores)}
    for metric in (*METRICS, "overall"):
        out[metric] = _r(sum(float(s[metric]) for s in scores) / len(scores) * SCALE) if scores else None
    out["overall_missing_zero"] = _r(out["overall"] * len(scores) / len(records)) if scores else 0.0
    return out


def build_factip_summary(records: list[dict[str, Any]], **header: Any) -> dict[str, Any]:
    """``factip_summary.json``: the total (micro over items), then each category."""
    summary: dict[str, Any] = {"benchmark": BENCHMARK, "protocol": PROTOCOL, "aggregation": AGGREGATION, "scale": "0-100", **header}
    summary["all"] = category_means(records)
    by_category: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_category.setdefault(str(record.get("category") or "unknown"), []).append(record)
    summary["by_category"] = {name: category_means(by_category[name]) for name in sorted(by_category)}
    summary["missing"] = {str(r["id"]): r.get("error") or "" for r in records if r.get("status") == "missing"}
    summary["failed"] = {str(r["id"]): r.get("error") or "" for r in records if r.get("status") == "failed"}
    return summary


def factip_summary_csv(summary: dict[str, Any]) -> str:
    columns = ("count", "scored", "missing_or_failed", *METRICS, "overall", "overall_missing_zero")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["split", "group", *columns])
    for split, name, metrics in [("all", "all", summary["all"])] + [("category", n, m) for n, m in summary["by_category"].items()]:
        writer.writerow([split, name, *("" if metrics.get(c) is None else metrics.get(c) for c in columns)])
    return buf.getvalue()


def read_factip_items(path: Path) -> list[dict[str, Any]]:
    """FactIP's prompt file (``test.json``): {id: {image_prompt, source_category, ip_name, ...}}.

    Returns one dict per item with ``id`` added (the key), every field kept.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise EvalInputError(f"FactIP data file not found: {path} (pass FactIP's test.json as --data)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalInputError(f"cannot read the FactIP data file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise EvalInputError(f"{path} is not FactIP's format (a JSON object mapping each id to its item)")
    items = []
    for key, item in data.items():
        if not isinstance(item, dict):
            raise EvalInputError(f"{path} item {key!r} is not a JSON object")
        if not str(item.get("image_prompt") or "").strip():
            raise EvalInputError(f"{path} item {key!r} has no 'image_prompt'; FactIP items need one")
        items.append({"id": str(key), **{k: v for k, v in item.items() if k != "id"}})
    return items
