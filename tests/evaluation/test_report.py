"""``genevolve-graph report``: side-by-side tables, Markdown and non-empty PNG bar charts."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from PIL import Image
from typer.testing import CliRunner

from genevolve_graph.evaluation.aggregate import build_summary
from genevolve_graph.cli.evaluate import register
from genevolve_graph.evaluation.wise import build_wise_summary
from tests.evaluation.test_aggregate import RECORDS, scored


def write_runs(tmp_path: Path) -> tuple[Path, Path]:
    base, ours = tmp_path / "qwen-image", tmp_path / "genevolve"
    base.mkdir()
    ours.mkdir()
    (base / "summary.json").write_text(json.dumps(build_summary(RECORDS, judge_model="judge-a")), encoding="utf-8")
    better = [scored(f"b{i}", r["eval_type"], r["category"], r["difficulty"], 1, 1, 0.5, 1) for i, r in enumerate(RECORDS)]
    (ours / "summary.json").write_text(json.dumps(build_summary(better, judge_model="judge-a")), encoding="utf-8")
    wise_records = [
        {"id": str(pid), "prompt_id": pid, "category": cat, "subcategory": "x", "status": "scored",
         "scores": {"consistency": 2, "realism": 1, "aesthetic_quality": 1}}
        for pid, cat in ((1, "cultural"), (401, "time"), (568, "space"), (701, "biology"), (801, "physics"), (901, "chemistry"))
    ]
    (ours / "wise_summary.json").write_text(json.dumps(build_wise_summary(wise_records, judge_model="judge-w")), encoding="utf-8")
    return base, ours


def assert_real_chart(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5000
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 200
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # text, axes and coloured bars, not a blank canvas
    # matplotlib's first two default colours (the two runs' bars) are both drawn
    rgb = {c for _, c in colours}
    assert (31, 119, 180) in rgb and (255, 127, 14) in rgb


def test_report_command_tables_markdown_and_charts(tmp_path: Path) -> None:
    base, ours = write_runs(tmp_path)
    app = typer.Typer()
    register(app)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(base), str(ours), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "KScore, all samples" in result.output and "qwen-image" in result.output and "genevolve" in result.output
    assert "0.7333" in result.output  # the baseline's overall, hand-computed in test_aggregate
    md = (out / "report.md").read_text()
    assert "| run | judge | count | missing/failed | F | V | T | A | overall | overall (missing=0) |" in md
    assert "| qwen-image | judge-a | 5 | 2 | 0.8333 | 0.5000 | 1.0000 | 0.5000 | 0.7333 | 0.4400 |" in md
    assert "## KScore overall by eval_type (n = samples)" in md and "0.6500 (n=3)" in md
    assert "## WISE (original): WiScore by category" in md and "| genevolve | judge-w |" in md
    for name in ("kscore_all.png", "kscore_by_eval_type.png", "kscore_by_category.png"):
        assert f"]({name})" in md
        assert_real_chart(out / name)
    wise_png = out / "wise_by_category.png"
    assert wise_png.is_file() and wise_png.stat().st_size > 5000


def test_report_labels_and_errors(tmp_path: Path) -> None:
    base, ours = write_runs(tmp_path)
    app = typer.Typer()
    register(app)
    out = tmp_path / "r"
    labelled = CliRunner().invoke(app, ["report", str(base / "summary.json"), str(ours), "--out", str(out),
                                        "--label", "baseline", "--label", "ours"], catch_exceptions=False)
    assert labelled.exit_code == 0 and "| baseline |" in (out / "report.md").read_text()
    wrong = CliRunner().invoke(app, ["report", str(base), "--label", "a", "--label", "b", "--out", str(out)])
    assert wrong.exit_code == 2 and "one per run" in wrong.output
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = CliRunner().invoke(app, ["report", str(empty), "--out", str(out)])
    assert missing.exit_code == 2 and "holds none of summary.json, knowgen_summary.json, factip_summary.json, wise_summary.json" in missing.output
