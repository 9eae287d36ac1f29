"""Side-by-side comparison of evaluation runs: terminal tables, a Markdown file, PNG bar charts.

A run is a directory holding ``summary.json`` (KScore), ``knowgen_summary.json``,
``factip_summary.json`` and/or ``wise_summary.json``; a path straight to one of those
files works too. Every table puts the runs in the columns (or rows) in the order given, so
the first run reads as the baseline; the KnowGen and FactIP tables by group and category
add each other run's difference from it.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genevolve_graph.evaluation.aggregate import GROUP_FIELDS
from genevolve_graph.evaluation.kscore import DIMENSIONS
from genevolve_graph.evaluation.results_io import EvalInputError, write_text_atomic
from genevolve_graph.evaluation.wise import CATEGORIES as WISE_CATEGORIES

KSCORE_FILE = "summary.json"
WISE_FILE = "wise_summary.json"
KNOWGEN_FILE = "knowgen_summary.json"
FACTIP_FILE = "factip_summary.json"
SUMMARY_FILES = (KSCORE_FILE, KNOWGEN_FILE, FACTIP_FILE, WISE_FILE)
CHART_FILES = ("kscore_all.png", "kscore_by_eval_type.png", "kscore_by_category.png", "knowgen_by_category.png",
               "factip_by_category.png", "wise_by_category.png")
SHORT = {"faithfulness": "F", "visual_correctness": "V", "text_accuracy": "T", "aesthetics": "A", "overall": "overall"}


@dataclass
class Run:
    """One evaluated run."""

    label: str
    path: Path
    kscore: dict[str, Any] | None = None
    wise: dict[str, Any] | None = None
    knowgen: dict[str, Any] | None = None
    factip: dict[str, Any] | None = None


@dataclass
class Table:
    """A titled table of strings, printable in the terminal and as Markdown."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalInputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise EvalInputError(f"{path} is not a summary (expected a JSON object)")
    return data


def load_runs(paths: list[Path], labels: list[str] | None = None) -> list[Run]:
    """Runs from directories (or summary files), labelled by ``labels`` or by directory name."""
    if not paths:
        raise EvalInputError("report needs at least one run directory")
    if labels and len(labels) != len(paths):
        raise EvalInputError(f"--label was given {len(labels)} times for {len(paths)} runs; give one per run or none")
    runs: list[Run] = []
    for index, raw in enumerate(paths):
        path = Path(raw)
        if path.is_file():
            directory, files = path.parent, [path]
        elif path.is_dir():
            directory, files = path, [path / name for name in SUMMARY_FILES if (path / name).is_file()]
        else:
            raise EvalInputError(f"run not found: {path} (pass a directory holding one of {', '.join(SUMMARY_FILES)})")
        if not files:
            raise EvalInputError(f"{path} holds none of {', '.join(SUMMARY_FILES)}; run `genevolve-graph evaluate` first")
        run = Run(label=labels[index] if labels else directory.resolve().name, path=directory)
        for file in files:
            data = _read(file)
            if str(data.get("protocol", "")).startswith("WISE"):
                run.wise = data
            elif data.get("benchmark") == "knowgen":
                run.knowgen = data
            elif data.get("benchmark") == "factip":
                run.factip = data
            elif "all" in data:
                run.kscore = data
            else:
                raise EvalInputError(f"{file} is not a KScore, KnowGen, FactIP or WISE summary")
        runs.append(run)
    seen: dict[str, int] = {}
    for run in runs:  # keep labels distinct: a/b/results and c/d/results must not collide
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label = f"{run.label} ({seen[run.label]})"
    return runs


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]{}|#!~])")


def md_text(value: Any) -> str:
    """``value`` as inert Markdown text: HTML markup escaped (a category from the input file
    must not become a tag or a script in a rendered report), Markdown punctuation
    backslash-escaped (no links, emphasis, code spans or column breaks), on one line."""
    text = " ".join(str(value).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def judge_cell(summary: dict[str, Any]) -> str:
    """The configured judge model, and the models its replies named when they differ
    (a gateway may route a name to another model)."""
    configured = str(summary.get("judge_model", ""))
    replied = [str(m) for m in summary.get("judge_reply_models") or [] if str(m) != configured]
    return f"{configured} (replies: {', '.join(replied)})" if replied else configured


def _fmt(value: Any) -> str:
    return "–" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def kscore_tables(runs: list[Run]) -> list[Table]:
    """All-samples table, then overall by eval_type, category and difficulty."""
    ks = [r for r in runs if r.kscore]
    if not ks:
        return []
    main = Table("KScore, all samples", ["run", "judge", "count", "missing/failed", "F", "V", "T", "A", "overall", "overall (missing=0)"])
    for run in ks:
        a = run.kscore["all"]  # type: ignore[index]
        main.rows.append([run.label, judge_cell(run.kscore), _fmt(a["count"]), _fmt(a["missing_or_failed"]),  # type: ignore[union-attr]
                          *(_fmt(a.get(d)) for d in DIMENSIONS), _fmt(a.get("overall")), _fmt(a.get("overall_missing_zero"))])
    tables = [main]
    for group in GROUP_FIELDS:
        names = sorted({name for r in ks for name in r.kscore.get(f"by_{group}", {})})  # type: ignore[union-attr]
        if not names:
            continue
        table = Table(f"KScore overall by {group} (n = samples)", [group, *(r.label for r in ks)])
        for name in names:
            cells = []
            for run in ks:
                metrics = run.kscore.get(f"by_{group}", {}).get(name)  # type: ignore[union-attr]
                cells.append("–" if not metrics else f"{_fmt(metrics.get('overall'))} (n={metrics['count']})")
            table.rows.append([name, *cells])
        tables.append(table)
    return tables


def wise_tables(runs: list[Run]) -> list[Table]:
    """WiScore by category and the weighted overall, per run."""
    ws = [r for r in runs if r.wise]
    if not ws:
        return []
    names = [c.name for c in WISE_CATEGORIES]
    table = Table("WISE (original): WiScore by category", ["run", "judge", *names, "overall"])
    for run in ws:
        w = run.wise  # type: ignore[assignment]
        overall = w.get("overall")
        overall_cell = _fmt(overall) if overall is not None else f"{_fmt(w.get('overall_partial'))} (partial)"
        table.rows.append([run.label, judge_cell(w),
                           *(_fmt(w["by_category"].get(n, {}).get("wiscore")) for n in names), overall_cell])
    return [table]


def _diff(value: Any, base: Any, digits: int) -> str:
    if value is None or base is None:
        return "–"
    return f"{value - base:+.{digits}f}"


def _compare(title: str, key: str, names: list[str], runs: list[Run], get: Any, digits: int) -> Table:
    """One row per name: each run's ``key`` (with n), then each later run minus the first."""
    headers = [key, *(r.label for r in runs), *(f"Δ {r.label} − {runs[0].label}" for r in runs[1:])]
    table = Table(title, headers)
    for name in names:
        metrics = [get(r).get(name) for r in runs]
        values = [m.get("overall") if m else None for m in metrics]
        cells = ["–" if not m else f"{_fmt_n(m.get('overall'), digits)} (n={m['count']})" for m in metrics]
        table.rows.append([name, *cells, *(_diff(v, values[0], digits) for v in values[1:])])
    return table


def _fmt_n(value: Any, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


KNOWGEN_DIMS = ("faithfulness", "visual_correctness", "text_accuracy", "aesthetics")
FACTIP_DIMS = ("clarity", "content_quality", "aesthetics", "text_relevance_ip")


def knowgen_tables(runs: list[Run]) -> list[Table]:
    """Headline (macro over the two groups), overall by group and by category, with differences."""
    kg = [r for r in runs if r.knowgen]
    if not kg:
        return []
    main = Table("KnowGen (macro over the two category groups)",
                 ["run", "judge", "count", "scored", "missing/failed", "F", "V", "T", "A", "overall", "overall (failures=0)"])
    for run in kg:
        a = run.knowgen["all"]  # type: ignore[index]
        main.rows.append([run.label, str(run.knowgen.get("judge_model", "")), str(a["count"]), str(a["scored"]),  # type: ignore[union-attr]
                          str(a["missing_or_failed"]), *(_fmt_n(a.get(d), 4) for d in KNOWGEN_DIMS),
                          _fmt_n(a.get("overall"), 4), _fmt_n(a.get("overall_missing_zero"), 4)])
    groups = list(kg[0].knowgen["by_group"])  # type: ignore[index]
    categories = sorted({n for r in kg for n in r.knowgen.get("by_category", {})})  # type: ignore[union-attr]
    return [main,
            _compare("KnowGen overall by group", "group", groups, kg, lambda r: r.knowgen["by_group"], 4),
            _compare("KnowGen overall by category", "category", categories, kg, lambda r: r.knowgen.get("by_category", {}), 4)]


def factip_tables(runs: list[Run]) -> list[Table]:
    """Total (micro over items, 0-100) and overall by category, with differences."""
    fi = [r for r in runs if r.factip]
    if not fi:
        return []
    main = Table("FactIP (0-100, mean over all items)",
                 ["run", "judge", "count", "scored", "missing/failed", "clarity", "content", "aesthetics", "identity (IP)",
                  "overall", "overall (failures=0)"])
    for run in fi:
        a = run.factip["all"]  # type: ignore[index]
        main.rows.append([run.label, str(run.factip.get("judge_model", "")), str(a["count"]), str(a["scored"]),  # type: ignore[union-attr]
                          str(a["missing_or_failed"]), *(_fmt_n(a.get(d), 1) for d in FACTIP_DIMS),
                          _fmt_n(a.get("overall"), 1), _fmt_n(a.get("overall_missing_zero"), 1)])
    categories = sorted({n for r in fi for n in r.factip.get("by_category", {})})  # type: ignore[union-attr]
    return [main, _compare("FactIP overall by category", "category", categories, fi, lambda r: r.factip.get("by_category", {}), 1)]


def all_tables(runs: list[Run]) -> list[Table]:
    return kscore_tables(runs) + knowgen_tables(runs) + factip_tables(runs) + wise_tables(runs)


def print_tables(tables: list[Table], console: Any = None) -> None:
    """Print the tables with rich."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    import sys

    # Piped output (CI logs, files) gets a wide console so numbers are never cut; a narrow
    # terminal folds cells onto more lines rather than truncating them with an ellipsis.
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    for table in tables:
        rich_table = RichTable(title=table.title, title_justify="left")
        for index, header in enumerate(table.headers):
            rich_table.add_column(escape(header), justify="left" if index == 0 else "right", overflow="fold")
        for row in table.rows:
            rich_table.add_row(*(escape(cell) for cell in row))  # cells are data: "[link=...]" is text, not markup
        console.print(rich_table)


def markdown(runs: list[Run], tables: list[Table], charts: list[Path], out_dir: Path) -> str:
    """The Markdown report: the runs, the tables, the charts."""
    lines = ["# Evaluation report", "", "Runs compared (in this order):", ""]
    for run in runs:
        kinds = [k for k, v in (("KScore", run.kscore), ("KnowGen", run.knowgen), ("FactIP", run.factip),
                                ("WISE (original)", run.wise)) if v]
        lines.append(f"- **{md_text(run.label)}**: {md_text(run.path)} ({', '.join(kinds)})")
    lines.append("")
    if any(r.kscore for r in runs):
        lines += ["KScore aggregation: dimension means over scored samples (text accuracy over text-applicable "
                  "samples, 0.5 if none); overall = 0.1F + 0.4V + 0.4T + 0.1A of those means; "
                  "\"missing=0\" counts missing or failed samples as 0.", ""]
    for kind, get in (("KnowGen", lambda r: r.knowgen), ("FactIP", lambda r: r.factip)):
        present = [r for r in runs if get(r)]
        if present:
            lines += [f"{kind} aggregation: {get(present[0]).get('aggregation', '')}", ""]
            judges = sorted({str(get(r).get("judge_model")) for r in present})
            if len(judges) > 1:
                warning = (f"**Warning**: the {kind} runs were judged by different models ({', '.join(judges)}); "
                           "their numbers are not comparable.")
                lines += [warning, ""]
    for table in tables:
        lines += [f"## {table.title}", "", "| " + " | ".join(md_text(h) for h in table.headers) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(table.headers) - 1)) + "|"]
        lines += ["| " + " | ".join(md_text(cell) for cell in row) + " |" for row in table.rows]
        lines.append("")
    if charts:
        lines += ["## Charts", ""]
        lines += [f"![{c.stem}]({c.relative_to(out_dir).as_posix()})" for c in charts]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- charts


def _grouped_bars(ax: Any, groups: list[str], series: list[tuple[str, list[float | None]]], title: str, *,
                 top: float = 1.15, digits: int = 2) -> None:
    """Bars per group, one colour per run; absent values are left out (no bar), labelled '–'."""
    width = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series):
        xs = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width=width, label=label)
        for bar, value in zip(bars, values, strict=True):
            text = "–" if value is None else f"{value:.{digits}f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")
    slanted = len(groups) > 4 and max(len(g) for g in groups) > 6
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30 if slanted else 0, ha="right" if slanted else "center", fontsize=8)
    ax.set_ylim(0, top)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def draw_charts(runs: list[Run], out_dir: Path) -> list[Path]:
    """PNG bar charts: KScore dimensions for all samples, KScore overall and dimensions by
    eval_type and by category, WiScore by category. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def legend(ax: Any) -> None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    ks = [r for r in runs if r.kscore]
    metrics = ["overall", *DIMENSIONS]
    if ks:
        fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(metrics) * max(1, len(ks)) + 2), 4), layout="constrained")
        _grouped_bars(ax, [SHORT[m] for m in metrics],
                      [(r.label, [r.kscore["all"].get(m) for m in metrics]) for r in ks], "KScore, all samples")  # type: ignore[index]
        legend(ax)
        save(fig, "kscore_all.png")
        for group in ("eval_type", "category"):
            names = sorted({n for r in ks for n in r.kscore.get(f"by_{group}", {})})  # type: ignore[union-attr]
            if not names:
                continue
            fig, axes = plt.subplots(len(metrics), 1, figsize=(max(7, 0.55 * len(names) * max(1, len(ks)) + 3), 2.6 * len(metrics)),
                                     layout="constrained")
            for ax, metric in zip(axes, metrics, strict=True):
                series = [(r.label, [(r.kscore.get(f"by_{group}", {}).get(n) or {}).get(metric) for n in names]) for r in ks]  # type: ignore[union-attr]
                _grouped_bars(ax, names, series, f"{metric} by {group}")
            legend(axes[0])
            save(fig, f"kscore_by_{group}.png")
    for kind, get, top, digits in (("knowgen", lambda r: r.knowgen, 1.15, 2), ("factip", lambda r: r.factip, 115.0, 1)):
        present = [r for r in runs if get(r)]
        if not present:
            continue
        groups = list(get(present[0]).get("by_group", {}))
        names = sorted({n for r in present for n in get(r).get("by_category", {})})
        columns = ["all", *groups, *names]

        def value(run: Run, column: str, get: Any = get, groups: list[str] = groups) -> float | None:
            summary = get(run)
            if column == "all":
                return summary["all"].get("overall")
            source = summary.get("by_group", {}) if column in groups else summary.get("by_category", {})
            return (source.get(column) or {}).get("overall")

        fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(columns) * len(present) + 3), 4.5), layout="constrained")
        label = "KnowGen" if kind == "knowgen" else "FactIP (0-100)"
        _grouped_bars(ax, columns, [(r.label, [value(r, c) for c in columns]) for r in present],
                      f"{label}: overall, all items, by group and by category", top=top, digits=digits)
        legend(ax)
        save(fig, f"{kind}_by_category.png")
    ws = [r for r in runs if r.wise]
    if ws:
        names = [c.name for c in WISE_CATEGORIES] + ["overall"]
        fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(names) * len(ws) + 3), 4), layout="constrained")
        series = []
        for run in ws:
            w = run.wise  # type: ignore[assignment]
            overall = w.get("overall") if w.get("overall") is not None else w.get("overall_partial")
            series.append((run.label, [w["by_category"].get(n, {}).get("wiscore") for n in names[:-1]] + [overall]))
        _grouped_bars(ax, names, series, "WISE (original): WiScore by category")
        legend(ax)
        save(fig, "wise_by_category.png")
    return written


@dataclass
class ReportFiles:
    """What ``build_report`` wrote."""

    markdown: Path
    charts: list[Path]
    tables: list[Table]


def build_report(paths: list[Path], out_dir: Path, *, labels: list[str] | None = None, console: Any = None,
                 print_to_terminal: bool = True) -> ReportFiles:
    """Load the runs, print the tables, draw the charts, write ``report.md`` into ``out_dir``."""
    runs = load_runs(paths, labels)
    tables = all_tables(runs)
    if print_to_terminal:
        print_tables(tables, console)
    out_dir = Path(out_dir)
    charts = draw_charts(runs, out_dir)
    md_path = out_dir / "report.md"
    write_text_atomic(md_path, markdown(runs, tables, charts, out_dir))
    return ReportFiles(markdown=md_path, charts=charts, tables=tables)
