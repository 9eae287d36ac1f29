"""KnowGen: KnowGen's own arithmetic on worked examples, and the whole command on a fixture in
KnowGen's format scored by the scripted judge (every expected number worked out by hand)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from genevolve_graph.cli.evaluate import register
from genevolve_graph.evaluation.knowgen import (
    build_knowgen_summary,
    group_of,
    parse_knowgen,
)
from tests.evaluation.bench_fixtures import build_knowgen, script_knowgen
from tests.evaluation.judge_server import ScriptedJudge


def scored(sid: str, category: str, f: float, v: float, t: float, a: float, na: bool = False) -> dict:
    return {"id": sid, "category": category, "status": "scored",
            "scores": {"faithfulness": f, "visual_correctness": v, "text_accuracy": 0.5 if na else t, "aesthetics": a,
                       "text_accuracy_na": na}}


def failed(sid: str, category: str) -> dict:
    return {"id": sid, "category": category, "status": "failed", "scores": None, "error": "judge_failed: x"}


def test_worked_example_two_groups_macro_average() -> None:
    """KnowGen: per group F, V, A means, T over text-applicable items, 4 dp; group overall from the
    means; headline = the plain mean of the two groups, whatever their sizes."""
    records = [
        scored("s1", "physics", 1, 1, 1, 1),
        scored("s2", "physics", 0, 0.5, 0, 0.5),
        scored("s3", "history", 0.5, 0.5, 0, 0.5, na=True),  # no text: its T (0.5) is not in the T mean
        scored("p1", "anime", 1, 0, 0, 0),
        failed("p2", "anime"),  # left out of the means
    ]
    # science: F = (1+0+0.5)/3 = 0.5; V = (1+0.5+0.5)/3 = 0.6667; T = (1+0)/2 = 0.5; A = (1+0.5+0.5)/3 = 0.6667
    #   overall = round(0.1*0.5 + 0.4*0.6667 + 0.4*0.5 + 0.1*0.6667, 4) = round(0.05 + 0.26668 + 0.2 + 0.06667, 4) = 0.5834
    # pop: F = 1, V = 0, T = 0, A = 0; overall = 0.1
    # headline: F = (0.5+1)/2 = 0.75; V = (0.6667+0)/2, 4 dp; overall = (0.5834+0.1)/2 = 0.3417
    summary = build_knowgen_summary(records)
    sk, pc = summary["by_group"]["science_and_knowledge"], summary["by_group"]["pop_culture_and_news"]
    assert (sk["faithfulness"], sk["visual_correctness"], sk["text_accuracy"], sk["aesthetics"]) == (0.5, 0.6667, 0.5, 0.6667)
    assert sk["overall"] == 0.5834 and sk["text_applicable"] == 2
    assert (pc["faithfulness"], pc["visual_correctness"], pc["text_accuracy"], pc["aesthetics"], pc["overall"]) == (1, 0, 0, 0, 0.1)
    assert pc["count"] == 2 and pc["scored"] == 1
    assert summary["all"]["faithfulness"] == 0.75
    assert summary["all"]["visual_correctness"] == round((0.6667 + 0) / 2, 4)
    assert summary["all"]["overall"] == round((0.5834 + 0.1) / 2, 4) == 0.3417
    # failures as zero: each group's overall x scored/count, then the same mean
    assert pc["overall_missing_zero"] == 0.05 and summary["all"]["overall_missing_zero"] == round((0.5834 + 0.05) / 2, 4)


def test_worked_example_empty_group_scores_zero() -> None:
    """As the released evaluator: a group with nothing scored counts 0.0, halving the headline."""
    summary = build_knowgen_summary([scored("s1", "physics", 1, 1, 1, 1), failed("p1", "news")])
    assert summary["by_group"]["pop_culture_and_news"]["overall"] == 0.0
    assert summary["all"]["overall"] == 0.5 and summary["empty_groups"] == ["pop_culture_and_news"]


def test_worked_example_text_never_applicable_is_half() -> None:
    summary = build_knowgen_summary([scored("s1", "art", 1, 1, 0, 1, na=True), scored("p1", "game", 0, 0, 1, 0)])
    # science: T has no applicable item -> 0.5; overall = 0.1 + 0.4 + 0.2 + 0.1 = 0.8; pop: 0.4
    assert summary["by_group"]["science_and_knowledge"]["text_accuracy"] == 0.5
    assert summary["by_group"]["science_and_knowledge"]["overall"] == 0.8
    assert summary["all"]["overall"] == 0.6 and summary["all"]["text_accuracy"] == 0.75


def test_categories_and_reply_normalisation() -> None:
    assert group_of(" Multi-Subject-Anime ") == "pop_culture_and_news" and group_of("chemistry") == "science_and_knowledge"
    assert group_of("cooking") is None
    scores, rationale = parse_knowgen('```json\n{"rationale": "Constraints: x", "faithfulness": 0.75, "visual_correctness": 1.3,'
                                      ' "text_accuracy": "n/a", "aesthetics": -1}\n```')
    # clipped to [0, 1] and rounded to 2 dp, not snapped; an unreadable text score means not applicable (T = 0.5)
    assert scores == {"faithfulness": 0.75, "visual_correctness": 1.0, "aesthetics": 0.0, "text_accuracy": 0.5,
                      "text_accuracy_na": True, "overall": round(0.075 + 0.4 + 0.2 + 0.0, 2)}
    assert rationale == "Constraints: x"
    with pytest.raises(ValueError, match="faithfulness"):
        parse_knowgen('{"visual_correctness": 1, "text_accuracy": 1, "aesthetics": 1}')


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def evaluate(app: typer.Typer, judge: ScriptedJudge, data: Path, results: Path, *extra: str):
    args = ["evaluate", "--benchmark", "knowgen", "--data", str(data), "--results", str(results), "--judge-model", "judge-kg",
            "--judge-base-url", judge.base_url, "--judge-api-key", "k", "--max-workers", "2", *extra]
    return CliRunner().invoke(app, args, catch_exceptions=False)


def _size(data_url: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as im:
        return im.size


def test_knowgen_fixture_end_to_end(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    data, results = build_knowgen(tmp_path)
    # the generated images are larger than the ground truth, so the order the judge sees them in is checkable
    for sid in ("k1", "k2", "k3", "k4", "k5", "k7"):
        Image.new("RGB", (70, 20), (1, 2, 3)).save(results.parent / "images" / f"{sid}.png")
    script_knowgen(judge)
    result = evaluate(app, judge, data, results)
    assert result.exit_code == 0, result.output
    summary = json.loads((results.parent / "knowgen_summary.json").read_text())
    # science: k1 (1, .5, 1, .5), k2 (.5, 1, n/a, 1); k6 render failed
    #   F = .75, V = .75, T = 1 (k1 only), A = .75; overall = .075 + .3 + .4 + .075 = .85
    # pop: k3 (1, 1, 0, .5), k4 (0, .5, .5, 0); k5 judge failed
    #   F = .5, V = .75, T = .25, A = .25; overall = .05 + .3 + .1 + .025 = .475
    sk, pc = summary["by_group"]["science_and_knowledge"], summary["by_group"]["pop_culture_and_news"]
    assert [sk[k] for k in ("faithfulness", "visual_correctness", "text_accuracy", "aesthetics", "overall")] == [0.75, 0.75, 1.0, 0.75, 0.85]
    assert [pc[k] for k in ("faithfulness", "visual_correctness", "text_accuracy", "aesthetics", "overall")] == [0.5, 0.75, 0.25, 0.25, 0.475]
    a = summary["all"]
    assert [a[k] for k in ("faithfulness", "visual_correctness", "text_accuracy", "aesthetics", "overall")] == [0.625, 0.75, 0.625, 0.5, 0.6625]
    # failures as zero: science .85 * 2/3 = .5667, pop .475 * 2/3 = .3167, mean .4417
    assert (sk["overall_missing_zero"], pc["overall_missing_zero"], a["overall_missing_zero"]) == (0.5667, 0.3167, 0.4417)
    assert (a["count"], a["scored"], a["missing_or_failed"]) == (6, 4, 2)
    assert summary["outside_groups"] == ["k7"]
    cats = summary["by_category"]
    assert cats["history"]["overall"] == 0.75  # 'History' lower-cased: .1 + .2 + .4 + .05
    assert cats["biology"]["overall"] == 0.75 and cats["biology"]["text_applicable"] == 0  # T = .5: .05 + .4 + .2 + .1
    assert (cats["film"]["count"], cats["film"]["overall"]) == (1, 0.4)  # a category with one item: 0 + .2 + .2 + 0
    assert (cats["anime"]["overall"], cats["anime"]["overall_missing_zero"]) == (0.55, 0.275)
    assert cats["physics"]["scored"] == 0 and cats["physics"]["overall"] is None and "cooking" not in cats
    assert summary["missing"] == {"k6": "render_failed: CUDA out of memory"}
    assert list(summary["failed"]) == ["k5"] and "judge_failed" in summary["failed"]["k5"]
    assert summary["judge_model"] == "judge-kg" and summary["temperature"] == 0.0
    # the records keep every field of the benchmark row and the per-item overall (2 dp)
    records = {json.loads(line)["id"]: json.loads(line) for line in (results.parent / "knowgen_eval.jsonl").read_text().splitlines()}
    assert records["k1"]["item"]["source"] == "web" and records["k1"]["item"]["meta"] == {"category": "History", "difficulty": "hard"}
    assert records["k1"]["scores"]["overall"] == 0.75 and records["k2"]["scores"]["text_accuracy_na"] is True
    # what the judge saw: temperature 0, Image 1 the generated image, Image 2 the ground truth
    request = judge.requests_for("case-k1:")[0]
    assert request.body["temperature"] == 0 and request.body["model"] == "judge-kg"
    assert [_size(u) for u in request.images()] == [(70, 20), (64, 48)]
    assert "KnowGen overall 0.6625 (failures left out; counted as 0: 0.4417)" in result.output


def test_rerun_is_answered_from_the_cache(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    data, results = build_knowgen(tmp_path)
    script_knowgen(judge, {"k5": (1, 1, 1, 1)})
    assert evaluate(app, judge, data, results).exit_code == 0
    first = json.loads((results.parent / "knowgen_summary.json").read_text())
    calls = len(judge.requests)
    assert calls == 6  # k1-k5 and k7 (k6 was never rendered)
    again = evaluate(app, judge, data, results, "--overwrite")
    assert again.exit_code == 0, again.output
    assert len(judge.requests) == calls  # no judge call at all
    second = json.loads((results.parent / "knowgen_summary.json").read_text())
    assert second["all"] == first["all"] and second["by_category"] == first["by_category"]
    assert second["cache"]["hits"] == calls and second["cache"]["misses"] == 0
    # new image bytes are a new key: only that item goes back to the judge
    Image.new("RGB", (64, 48), (9, 9, 9)).save(results.parent / "images" / "k3.png")
    assert evaluate(app, judge, data, results, "--overwrite").exit_code == 0
    assert len(judge.requests) == calls + 1 and judge.requests[-1].marker == "case-k3:"
    # and --no-judge-cache asks for everything
    assert evaluate(app, judge, data, results, "--overwrite", "--no-judge-cache").exit_code == 0
    assert len(judge.requests) == 2 * calls + 1


def test_without_the_data_file_the_results_rows_are_the_items(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    """Stage 2 keeps every benchmark field, so the results alone give the same numbers (ground
    truth found beside the results or under --gt-root)."""
    data, results = build_knowgen(tmp_path)
    script_knowgen(judge)
    args = ["evaluate", "--benchmark", "knowgen", "--results", str(results), "--gt-root", str(data.parent), "--judge-model", "judge-kg",
            "--judge-base-url", judge.base_url, "--judge-api-key", "k"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((results.parent / "knowgen_summary.json").read_text())
    assert summary["all"]["overall"] == 0.6625 and summary["data"] is None
    record = json.loads((results.parent / "knowgen_eval.jsonl").read_text().splitlines()[0])
    assert record["item"]["source"] == "web" and "gen_prompt" not in record["item"] and "output_path" not in record["item"]
