"""``genevolve-graph report`` on KnowGen and FactIP: two result sets from the fixtures, judged by
the scripted judge, compared in a table (with per-group and per-category differences) and a plot."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from genevolve_graph.cli.evaluate import register
from tests.evaluation.bench_fixtures import (
    build_factip,
    build_knowgen,
    script_factip,
    script_knowgen,
)
from tests.evaluation.judge_server import ScriptedJudge
from tests.evaluation.test_report import assert_real_chart

BETTER_KNOWGEN = {"k1": (1, 1, 1, 1), "k3": (1, 1, 1, 1), "k5": (0.5, 0.5, 0.5, 0.5)}
BETTER_FACTIP = {"f2": (10, 10, 10, 10, 10), "f3": (5, 5, 5, 5, 5)}


def run_both(app: typer.Typer, judge: ScriptedJudge, tmp: Path) -> dict[str, tuple[Path, Path]]:
    """Evaluate a baseline and a better agent on both benchmarks; returns {benchmark: (base dir, ours dir)}."""
    out: dict[str, tuple[Path, Path]] = {}
    dirs = []
    for name, answers_kg, answers_fi in (("baseline", None, None), ("agent", BETTER_KNOWGEN, BETTER_FACTIP)):
        data, results = build_knowgen(tmp / name / "knowgen", better=answers_kg is not None)
        script_knowgen(judge, answers_kg)
        args = ["evaluate", "--benchmark", "knowgen", "--data", str(data), "--results", str(results), "--judge-model", "judge-x",
                "--judge-base-url", judge.base_url, "--judge-api-key", "k"]
        assert CliRunner().invoke(app, args, catch_exceptions=False).exit_code == 0
        fdata, gt, fresults = build_factip(tmp / name / "factip", better=answers_fi is not None)
        script_factip(judge, answers_fi)
        args = ["evaluate", "--benchmark", "factip", "--data", str(fdata), "--gt-root", str(gt), "--results", str(fresults),
                "--judge-model", "judge-x", "--judge-base-url", judge.base_url, "--judge-api-key", "k"]
        assert CliRunner().invoke(app, args, catch_exceptions=False).exit_code == 0
        dirs.append((results.parent, fresults.parent))
    out["knowgen"] = (dirs[0][0], dirs[1][0])
    out["factip"] = (dirs[0][1], dirs[1][1])
    return out


def test_report_compares_two_result_sets_on_knowgen_and_factip(judge: ScriptedJudge, tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    runs = run_both(app, judge, tmp_path)
    for bench in ("knowgen", "factip"):
        base, ours = runs[bench]
        out = tmp_path / f"report-{bench}"
        result = CliRunner().invoke(app, ["report", str(base), str(ours), "--label", "baseline", "--label", "agent", "--out", str(out)],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        print(result.output)
        md = (out / "report.md").read_text()
        assert_real_chart(out / f"{bench}_by_category.png")
        if bench == "knowgen":
            # agent: science k1 (1,1,1,1), k2 (.5,1,n/a,1): F .75 V 1 T 1 A 1 -> .075+.4+.4+.1 = .975
            #        pop k3 (1,1,1,1), k4 (0,.5,.5,0), k5 (.5,.5,.5,.5): F .5 V .6667 T .6667 A .5 -> .05+.26668+.26668+.05 = .6334
            #        headline (.975 + .6334) / 2 = .8042; baseline .6625 (test_knowgen) -> +.1417
            assert "| baseline | judge-x | 6 | 4 | 2 | 0.6250 | 0.7500 | 0.6250 | 0.5000 | 0.6625 | 0.4417 |" in md
            assert "| agent | judge-x | 6 | 5 | 1 |" in md and "| 0.8042 |" in md
            assert r"| science\_and\_knowledge | 0.8500 (n=3) | 0.9750 (n=3) | +0.1250 |" in md
            assert r"| pop\_culture\_and\_news | 0.4750 (n=3) | 0.6334 (n=3) | +0.1584 |" in md
            # anime, agent: k3 (1,1,1,1), k5 (.5,.5,.5,.5): every mean .75 -> overall .75
            assert "| anime | 0.5500 (n=2) | 0.7500 (n=2) | +0.2000 |" in md
            assert "| film | 0.4000 (n=1) | 0.4000 (n=1) | +0.0000 |" in md
            assert "| physics | – (n=1) | – (n=1) | – |" in md  # nothing scored in that category
        else:
            # agent f2: 10 everywhere -> 10; f3: 5 everywhere -> 5; Animation (8.45 + 10 + 5) / 3 x 10 = 78.2
            # total (8.45 + 10 + 5 + 9.1) / 4 x 10 = 81.375 -> 81.4; baseline 76.8
            assert "| baseline | judge-x | 5 | 3 | 2 | 80.0 | 80.0 | 73.3 | 76.7 | 76.8 | 46.1 |" in md
            assert "| agent | judge-x | 5 | 4 | 1 |" in md and "| 81.4 | 65.1 |" in md
            assert "| Animation | 69.8 (n=3) | 78.2 (n=3) | +8.4 |" in md
            assert "| Landmark | 91.0 (n=1) | 91.0 (n=1) | +0.0 |" in md
            assert "| Celebrity | – (n=1) | – (n=1) | – |" in md
        assert "Δ agent − baseline" in md


def test_report_warns_when_one_benchmark_was_judged_by_different_models(tmp_path: Path) -> None:
    import json

    from genevolve_graph.evaluation.factip import build_factip_summary

    record = {"id": "f1", "category": "Animation", "status": "scored",
              "scores": {"clarity": 10, "content_quality": 10, "aesthetics": 10, "text_relevance_ip": 10, "overall": 10.0}}
    for name, model in (("a", "gpt-4o"), ("b", "qwen-vl")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "factip_summary.json").write_text(json.dumps(build_factip_summary([record], judge_model=model)))
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "r")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    md = (tmp_path / "r" / "report.md").read_text()
    assert "the FactIP runs were judged by different models (gpt-4o, qwen-vl)" in md
    assert "| Animation | 100.0 (n=1) | 100.0 (n=1) | +0.0 |" in md
