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


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a torn tail of a running or killed stage
                continue
    return out


def _planned(folder: Path) -> int | None:
    manifest = folder / "run.json"
    if not manifest.exists():
        return None
    return len(json.loads(manifest.read_text(encoding="utf-8")).get("rows", []))


def _tally(stage: str, records: list[dict[str, Any]], planned: int | None) -> StageCounts:
    counts = StageCounts(stage, input=planned if planned is not None else len(records))
    dropped: collections.Counter[str] = collections.Counter()
    infra: collections.Counter[str] = collections.Counter()
    for record in records:
        status, reason = outcome(stage, record)
        if status == KEPT:
            counts.kept += 1
        elif status == DROPPED:
            dropped[reason or "unspecified"] += 1
        else:
            infra[reason or "unspecified"] += 1
    counts.dropped, counts.infra = dict(dropped.most_common()), dict(infra.most_common())
    counts.pending = max(0, counts.input - len(records))
    return counts


def funnel(root: Path) -> dict[str, Any]:
    """Every stage's counts, and the headline funnel (as the paper's statistics give it)."""
    root = Path(root)
    stages: list[StageCounts] = []
    # requests
    cells = _jsonl(root / "requests" / "results.jsonl")
    req = StageCounts("requests", input=_planned(root / "requests") or len(cells))
    generated = sum(len(c.get("requests") or []) for c in cells)
    malformed = sum(len(c.get("malformed") or []) for c in cells)
    infra = collections.Counter(c.get("requests_reason") or "expander_error" for c in cells if c.get("requests_status") == INFRA)
    dedup = json.loads((root / "requests" / DEDUP_FILE).read_text()) if (root / "requests" / DEDUP_FILE).exists() else None
    near = len(dedup["dropped"]) if dedup else 0
    req.kept = len(_jsonl(root / "requests" / REQUESTS_FILE)) if dedup else 0
    req.dropped = {k: v for k, v in {"near_duplicate": near, "malformed_request": malformed}.items() if v}
    req.infra = {f"{k} (cells)": v for k, v in infra.items()}
    req.pending = max(0, req.input - len(cells))
    req.notes = {"cells": req.input, "generated": generated}
    stages.append(req)
    # per-item stages
    for stage, folder in (("trajectories", "trajectories"), ("filter", "filter"), ("render", "render"), ("visual-filter", "visual-filter")):
        path = root / folder / "results.jsonl"
        if not path.exists() and not (root / folder / "run.json").exists():
            continue
        counts = _tally(stage, _jsonl(path), _planned(root / folder))
        if stage == "filter":
            records = _jsonl(path)
            counts.notes["check_failures"] = {c: sum(1 for r in records if c in ((r.get("filter") or {}).get("failed_checks") or {})) for c in CHECKS}
            counts.notes["passed_checks"] = sum(1 for r in records if not ((r.get("filter") or {}).get("failed_checks")))
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


def funnel_chart(data: dict[str, Any], path: Path) -> Path:
    """A horizontal funnel: one bar per headline step, centred, labelled with its count."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    steps = data["headline"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(3, len(steps)) + 1))
    top = max((c for _, c in steps), default=1) or 1
    for row, (name, count) in enumerate(steps):
        ax.barh(row, count, left=(top - count) / 2, color="#4c78a8" if "GT" not in name and "RL" not in name and "bench" not in name else "#f58518")
        ax.text(top / 2, row, f"{name}: {count}", ha="center", va="center", color="black", fontsize=9)
    ax.set_yticks([])
    ax.set_xticks([])
    ax.invert_yaxis()
    ax.set_title("Data funnel")
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
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
