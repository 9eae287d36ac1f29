"""``evaluate --benchmark``: one command for the four benchmarks, the judge cache on KScore and WISE,
and one-line errors for bad combinations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genevolve_graph.cli.evaluate import register
from tests.evaluation.bench_fixtures import build_factip
from tests.evaluation.conftest import make_image
from tests.evaluation.judge_server import ScriptedJudge
from tests.evaluation.test_evaluate_cli import build_run, script
from tests.evaluation.test_wise import script as script_wise
from tests.evaluation.test_wise import write_wise_data


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def judge_args(judge: ScriptedJudge) -> list[str]:
    return ["--judge-model", "judge-test", "--judge-base-url", judge.base_url, "--judge-api-key", "k"]


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_kscore_is_the_default_and_a_rerun_costs_no_judge_call(app, judge: ScriptedJudge, tmp_path: Path) -> None:
    results, gt_root = build_run(tmp_path)
    script(judge, a7_readable=True)
    base = ["evaluate", "--results", str(results), "--gt-root", str(gt_root), *judge_args(judge)]
    first = invoke(app, *base)
    assert first.exit_code == 0, first.output
    summary = json.loads((results.parent / "summary.json").read_text())
    assert summary["protocol"] == "KScore (GenEvolve-Bench)" and summary["temperature"] == 0.0
    record = json.loads((results.parent / "results_eval.jsonl").read_text().splitlines()[0])
    assert record["item"]["question"] == "case-a1: draw it" and record["item"]["difficulty"] == "hard"  # the row's own fields
    assert "gen_prompt" not in record["item"] and "output_path" not in record["item"]
    calls = len(judge.requests)
    again = invoke(app, *base, "--benchmark", "kscore", "--overwrite")
    assert again.exit_code == 0, again.output
    assert len(judge.requests) == calls
    second = json.loads((results.parent / "summary.json").read_text())
    assert second["all"] == summary["all"] and second["cache"]["hits"] == 4 and second["cache"]["misses"] == 0
    assert "4 judgements from the cache" in again.output


def test_wise_through_evaluate_benchmark_and_its_cache(app, judge: ScriptedJudge, tmp_path: Path) -> None:
    data = write_wise_data(tmp_path)
    images = tmp_path / "images"
    for pid in (1, 2, 401, 568, 701, 801, 901):
        make_image(images / f"{pid}.png")
    script_wise(judge)
    args = ["evaluate", "--benchmark", "wise", "--data", str(data), "--images", str(images), "--out-dir", str(tmp_path / "out"),
            *judge_args(judge)]
    first = invoke(app, *args)
    assert first.exit_code == 0, first.output
    summary = json.loads((tmp_path / "out" / "wise_summary.json").read_text())
    assert summary["protocol"] == "WISE (original)" and summary["overall"] is not None
    assert judge.requests[0].body["max_tokens"] == 2000  # the protocol's cap is the default here too
    calls = len(judge.requests)
    assert invoke(app, *args, "--overwrite").exit_code == 0
    assert len(judge.requests) == calls
    assert json.loads((tmp_path / "out" / "wise_summary.json").read_text())["overall"] == summary["overall"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--benchmark", "knowgenn"], "--benchmark 'knowgenn' is not one of kscore, knowgen, factip, wise"),
        (["--benchmark", "factip"], "FactIP needs its prompt file: pass --data test.json"),
        (["--benchmark", "kscore", "--data", "x.json"], "drop --data"),
        (["--benchmark", "wise"], "--benchmark wise needs --data"),
        (["--benchmark", "wise", "--data", "d", "--gt-root", "g"], "drop --gt-root"),
        (["--benchmark", "knowgen", "--images", "imgs"], "--images is for --benchmark wise"),
        (["--benchmark", "knowgen", "--judge-cache", "c.sqlite", "--no-judge-cache"], "exclude each other"),
    ],
)
def test_bad_combinations_are_one_line_errors(app, judge: ScriptedJudge, tmp_path: Path, extra: list[str], message: str) -> None:
    _, _, results = build_factip(tmp_path)
    result = invoke(app, "evaluate", "--results", str(results), *judge_args(judge), *extra)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not judge.requests


def test_the_cache_never_overwrites_an_input(app, judge: ScriptedJudge, tmp_path: Path) -> None:
    data, gt, results = build_factip(tmp_path)
    result = invoke(app, "evaluate", "--benchmark", "factip", "--data", str(data), "--gt-root", str(gt), "--results", str(results),
                    "--judge-cache", str(data), *judge_args(judge))
    assert result.exit_code == 2 and "--data" in result.output
    assert json.loads(data.read_text())  # untouched
