"""``data report DIR``: the funnel of a data build, per stage and per drop reason.

Counts are read from the stage folders (never from a log), so a report of a resumed or
partly built folder is exact for what is recorded. Quality drops and infrastructure
failures are separate columns: an endpoint outage must not read as bad data. The report
is printed, written as ``DIR/report/funnel.md`` and ``funnel.json``, and drawn as a
matplotlib funnel chart ``DIR/report/funnel.png``.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genevolve_graph.data.checks import CHECKS
from genevolve_graph.data.layout import DEDUP_FILE, DROPPED, INFRA, KEPT, REQUESTS_FILE, SELECTION_FILE, SPLIT_FILE, outcome


@dataclass
class StageCounts:
    stage: str
    input: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    infra: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "input": self.input, "kept": self.kept, "dropped": self.dropped,
                "dropped_total": sum(self.dropped.values()), "infra_error": self.infra,
                "infra_error_total": sum(self.infra.values()), "pending": self.pending, **self.notes}


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file, read one line at a time (a report of 10^5 items holds
    counts, not records)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:  # a torn tail of a running or killed stage
                    continue


def _planned(folder: Path) -> int | None:
    manifest = folder / "run.json"
    if not manifest.exists():
        return None
    return len(json.loads(manifest.read_text(encoding="utf-8")).get("rows", []))


def _tally(stage: str, records: Iterable[dict[str, Any]], planned: int | None,
           also: Callable[[dict[str, Any]], None] | None = None) -> StageCounts:
    """The outcome counts of ``records`` (read once; ``also`` sees each record too)."""
    counts = StageCounts(stage)
    dropped: collections.Counter[str] = collections.Counter()
    infra: collections.Counter[str] = collections.Counter()
    seen = 0
    for record in records:
        seen += 1
        if also is not None:
            also(record)
        status, reason = outcome(stage, record)
        if status == KEPT:
            counts.kept += 1
        elif status == DROPPED:
            dropped[reason or "unspecified"] += 1
        else:
            infra[reason or "unspecified"] += 1
    counts.input = planned if planned is not None else seen
    counts.dropped, counts.infra = dict(dropped.most_common()), dict(infra.most_common())
    counts.pending = max(0, counts.input - seen)
    return counts


def _check_counter(failures: collections.Counter[str]) -> Callable[[dict[str, Any]], None]:
    """Counts each check a filter record failed (``""``: passed every check)."""
    def count(record: dict[str, Any]) -> None:
        failed = (record.get("filter") or {}).get("failed_checks")
        failures.update(c for c in CHECKS if c in (failed or {}))
        if not failed:
            failures[""] += 1
    return count


def funnel(root: Path) -> dict[str, Any]:
    """Every stage's counts, and the headline funnel (as the paper's statistics give it)."""
    root = Path(root)
    stages: list[StageCounts] = []
    # requests
    cells = generated = malformed = 0
    infra: collections.Counter[str] = collections.Counter()
    for cell in _jsonl(root / "requests" / "results.jsonl"):
        cells += 1
        generated += len(cell.get("requests") or [])
        malformed += len(cell.get("malformed") or [])
        if cell.get("requests_status") == INFRA:
            infra[cell.get("requests_reason") or "expander_error"] += 1
    req = StageCounts("requests", input=_planned(root / "requests") or cells)
    dedup = json.loads((root / "requests" / DEDUP_FILE).read_text()) if (root / "requests" / DEDUP_FILE).exists() else None
    near = len(dedup["dropped"]) if dedup else 0
    req.kept = sum(1 for _ in _jsonl(root / "requests" / REQUESTS_FILE)) if dedup else 0
    req.dropped = {k: v for k, v in {"near_duplicate": near, "malformed_request": malformed}.items() if v}
    req.infra = {f"{k} (cells)": v for k, v in infra.items()}
    req.pending = max(0, req.input - cells)
    req.notes = {"cells": req.input, "generated": generated}
    stages.append(req)
    # per-item stages
    for stage, folder in (("trajectories", "trajectories"), ("filter", "filter"), ("render", "render"), ("visual-filter", "visual-filter")):
        path = root / folder / "results.jsonl"
        if not path.exists() and not (root / folder / "run.json").exists():
            continue
        failures: collections.Counter[str] = collections.Counter()
        counts = _tally(stage, _jsonl(path), _planned(root / folder), _check_counter(failures) if stage == "filter" else None)
        if stage == "filter":
            counts.notes["check_failures"] = {c: failures[c] for c in CHECKS}
            counts.notes["passed_checks"] = failures[""]
        if stage == "render" and (root / "render" / SELECTION_FILE).exists():
            selection = json.loads((root / "render" / SELECTION_FILE).read_text())
            counts.notes["selected_for_gt"] = len(selection["gt"])
            counts.notes["sft_view"] = len(selection["sft"])
        stages.append(counts)
    split = json.loads((root / SPLIT_FILE).read_text()) if (root / SPLIT_FILE).exists() else None
    by = {s.stage: s for s in stages}
    headline: list[tuple[str, int]] = []
    if "requests" in by and dedup:
        headline.append(("requests", by["requests"].kept))
    if "trajectories" in by:
        headline.append(("teacher answered", by["trajectories"].kept))
    if "filter" in by:
        headline.append(("passed structural checks", by["filter"].notes.get("passed_checks", 0)))
        headline.append(("filtered trajectories", by["filter"].kept))
    if split:
        headline.append(("SFT trajectories", split["sft"]))
    if "render" in by:
        headline.append(("GT renders", by["render"].kept))
    if "visual-filter" in by:
        headline.append(("GT renders kept", by["visual-filter"].kept))
    if split:
        headline.append(("RL cases", split["rl"]))
        headline.append(("benchmark cases", split["bench"]))
    return {"root": str(root), "stages": [s.to_json() for s in stages], "split": split, "headline": headline}


def markdown(data: dict[str, Any]) -> str:
    lines = [f"# Data funnel: {data['root']}", "", "## Funnel", "", "| step | count |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in data["headline"]]
    lines += ["", "## Per stage", "", "| stage | input | kept | dropped (quality) | infrastructure failures | pending |", "|---|---|---|---|---|---|"]
    for s in data["stages"]:
        lines.append(f"| {s['stage']} | {s['input']} | {s['kept']} | {s['dropped_total']} | {s['infra_error_total']} | {s['pending']} |")
    lines += ["", "## Drop reasons", "", "| stage | reason | kind | count |", "|---|---|---|---|"]
    for s in data["stages"]:
        for reason, count in s["dropped"].items():
            lines.append(f"| {s['stage']} | {reason} | quality | {count} |")
        for reason, count in s["infra_error"].items():
            lines.append(f"| {s['stage']} | {reason} | infrastructure | {count} |")
    for s in data["stages"]:
        if "check_failures" in s:
            lines += ["", "## Programmatic checks (every failing check counted; the first one is the drop reason)", "",
                      "| check | trajectories failing |", "|---|---|"]
            lines += [f"| {name} | {count} |" for name, count in s["check_failures"].items()]
    if data.get("split"):
        split = data["split"]
        lines += ["", "## Split", "", f"seed {split['seed']}: SFT {split['sft']}, RL {split['rl']}, benchmark {split['bench']}",
                  f"benchmark by eval_type: {json.dumps(split.get('bench_by_eval_type', {}))}",
                  f"RL by eval_type: {json.dumps(split.get('rl_by_eval_type', {}))}"]
    return "\n".join(lines) + "\n"


@dataclass
class ChartRow:
    """One bar of the funnel chart: a step, and its items split by outcome."""

    label: str
    branch: str
    """``""`` on the shared trunk, ``"sft"`` or ``"gt"`` after the fork."""
    segments: list[tuple[str, str, int]]
    """``(kind, reason, count)``; kind is kept, dropped, infra, pending, or a view of the split."""

    @property
    def total(self) -> int:
        return sum(count for _, _, count in self.segments)


def _stage_segments(stage: dict[str, Any], kept_label: str = "kept") -> list[tuple[str, str, int]]:
    segments = [("kept", kept_label, stage["kept"])]
    segments += [("dropped", reason, count) for reason, count in stage["dropped"].items()]
    segments += [("infra", reason, count) for reason, count in stage["infra_error"].items()]
    if stage.get("pending"):
        segments.append(("pending", "pending", stage["pending"]))
    return [seg for seg in segments if seg[2]]


def chart_rows(data: dict[str, Any]) -> list[ChartRow]:
    """The funnel as the chart draws it, from the recipe's cells down: the shared stages, then
    the fork of the filtered trajectories into the SFT view and the ground-truth (GT)
    candidates, then the GT branch (render, visual filter) into the RL and benchmark views.
    Every row shows what went on (kept), the quality drops by reason, the infrastructure
    failures by reason and what is still pending."""
    by = {s["stage"]: s for s in data["stages"]}
    rows: list[ChartRow] = []
    req = by.get("requests")
    if req:
        failed_cells = sum(req["infra_error"].values())
        cells = [("kept", "expanded", req["input"] - failed_cells - req["pending"])]
        cells += [("infra", reason.replace(" (cells)", ""), count) for reason, count in req["infra_error"].items()]
        cells += [("pending", "pending", req["pending"])] if req["pending"] else []
        rows.append(ChartRow("cells", "", [seg for seg in cells if seg[2]]))
        malformed = req["dropped"].get("malformed_request", 0)
        written = [("kept", "kept", req["kept"])] + [("dropped", r, c) for r, c in req["dropped"].items()]
        rows.append(ChartRow(f"requests written ({req.get('generated', 0) + malformed})", "", [seg for seg in written if seg[2]]))
    for stage, label in (("trajectories", "teacher trajectories"), ("filter", "checks and audit")):
        if stage in by:
            rows.append(ChartRow(label, "", _stage_segments(by[stage])))
    render, split = by.get("render"), data.get("split")
    if render and "sft_view" in render:
        rows.append(ChartRow("SFT view", "sft", [("kept", "SFT trajectories", render["sft_view"])]))
        rows.append(ChartRow("candidates", "gt", [("kept", "to render", render.get("selected_for_gt", render["input"]))]))
    if render:
        rows.append(ChartRow("render", "gt", _stage_segments(render, "rendered")))
    if "visual-filter" in by:
        rows.append(ChartRow("visual filter", "gt", _stage_segments(by["visual-filter"])))
    if split:
        rows.append(ChartRow("RL / benchmark split", "gt", [seg for seg in (("rl", "RL cases", split["rl"]), ("bench", "benchmark cases", split["bench"])) if seg[2]]))
    return rows


KIND_COLOURS = {"kept": "#4c78a8", "pending": "#d9d9d9", "rl": "#54a24b", "bench": "#b279a2"}
DROP_COLOURS = ["#f58518", "#ffbf79", "#e45756", "#ff9d98", "#eeca3b", "#9d755d", "#bab0ac", "#72b7b2",
                "#fcce14", "#d67195", "#8c6d31", "#bcbd22", "#17becf", "#c49c94", "#f7b6d2", "#dbdb8d"]
"""One colour per quality-drop reason (none of them the kept, RL or benchmark colour)."""
INFRA_COLOUR = "#7f0000"
BRANCH_PREFIX = {"": "", "sft": "SFT branch \u25b8 ", "gt": "GT branch \u25b8 "}


def funnel_chart(data: dict[str, Any], path: Path) -> Path:
    """The funnel as stacked bars (``chart_rows``): one colour per quality-drop reason, hatched
    dark red for infrastructure failures, the fork marked by branch labels, and a legend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = chart_rows(data)
    reasons = list(dict.fromkeys(reason for row in rows for kind, reason, _ in row.segments if kind == "dropped"))
    drop_colour = {reason: DROP_COLOURS[i % len(DROP_COLOURS)] for i, reason in enumerate(reasons)}
    fig, ax = plt.subplots(figsize=(11, 0.55 * max(4, len(rows)) + 2.2))
    for y, row in enumerate(rows):
        left = 0
        for kind, reason, count in row.segments:
            colour = drop_colour[reason] if kind == "dropped" else INFRA_COLOUR if kind == "infra" else KIND_COLOURS[kind]
            ax.barh(y, count, left=left, color=colour, edgecolor="white", hatch="//" if kind == "infra" else None)
            if count:
                ax.text(left + count / 2, y, str(count), ha="center", va="center", fontsize=8,
                        color="white" if kind in ("kept", "infra", "rl", "bench") else "black")
            left += count
        infra = ", ".join(f"{r} {c}" for k, r, c in row.segments if k == "infra")
        if infra:
            ax.text(left + 0.3, y, f"infrastructure: {infra}", va="center", fontsize=7, color=INFRA_COLOUR)
    fork = next((i for i, row in enumerate(rows) if row.branch), None)
    if fork is not None:  # the fork: the filtered trajectories go to the SFT view or become GT candidates
        ax.axhline(fork - 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.text(0.2, fork - 0.5, " fork of the filtered trajectories ", va="bottom", fontsize=7, color="grey")
    ax.set_yticks(range(len(rows)), [BRANCH_PREFIX[row.branch] + row.label for row in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("items")
    ax.set_xlim(0, max((row.total for row in rows), default=1) * 1.6 + 1)
    ax.set_title("Data funnel, from the recipe's cells down (then the SFT and GT branches)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles = [Patch(color=KIND_COLOURS["kept"], label="kept / passed on"),
               Patch(facecolor=INFRA_COLOUR, hatch="//", edgecolor="white", label="infrastructure failure")]
    handles += [Patch(color=drop_colour[r], label=f"dropped: {r}") for r in reasons]
    handles += [Patch(color=KIND_COLOURS[k], label=label) for k, label in (("rl", "RL cases"), ("bench", "benchmark cases"), ("pending", "pending"))
                if any(kind == k for row in rows for kind, _, _ in row.segments)]
    ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(root: Path, out: Path | None = None) -> tuple[dict[str, Any], Path]:
    """Write ``funnel.md``, ``funnel.json`` and ``funnel.png`` into ``out`` (default ``ROOT/report``)."""
    data = funnel(root)
    out = Path(out) if out else Path(root) / "report"
    out.mkdir(parents=True, exist_ok=True)
    (out / "funnel.md").write_text(markdown(data), encoding="utf-8")
    (out / "funnel.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    funnel_chart(data, out / "funnel.png")
    return data, out
