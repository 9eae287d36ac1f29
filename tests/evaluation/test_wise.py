"""WISE (original): data loading, WiScore, category weights, the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genevolve_graph.cli.evaluate import register
from genevolve_graph.evaluation.results_io import EvalInputError
from genevolve_graph.evaluation.wise import CATEGORIES, category_of, load_wise_prompts, wiscore
from tests.evaluation.conftest import make_image
from tests.evaluation.judge_server import ScriptedJudge, error, ok


def record(pid: int, prompt: str, category: str, sub: str) -> dict:
    """A prompt record with the shape of the WISE repository's data/*.json."""
    return {"prompt_id": pid, "Prompt": prompt, "Explanation": f"explains wise-{pid}", "Category": category, "Subcategory": sub}


def write_wise_data(root: Path) -> Path:
    data = root / "wise-data"
    data.mkdir(parents=True)
    files = {
        "cultural_common_sense.json": [
            record(1, "wise-1: the traditional food of the Spring Festival", "Cultural knowledge", "Festival"),
            record(2, "wise-2: the animal on the flag of Bhutan", "Cultural knowledge", "Animal"),
            record(3, "wise-3: the instrument of a famous cellist", "Cultural knowledge", "Celebrity"),
        ],
        "spatio-temporal_reasoning.json": [
            record(401, "wise-401: a maple leaf in late October", "Spatio-temporal reasoning", "Time"),
            record(568, "wise-568: the view from below a table", "Spatio-temporal reasoning", "Space"),
        ],
        "natural_science.json": [
            record(701, "wise-701: a cactus's adaptation to drought", "Natural science", "Biology"),
            record(801, "wise-801: a straw in a glass of water", "Natural science", "Physics"),
            record(901, "wise-901: copper in a flame", "Natural science", "Chemistry"),
        ],
        # simplified prompts with the same ids: not read unless --prompt-set rewrite
        "cultural_common_sense_rewrite.json": [record(1, "wise-1 rewritten: dumplings", "Cultural knowledge", "Festival")],
    }
    for name, records in files.items():
        (data / name).write_text(json.dumps(records, indent=2), encoding="utf-8")
    return data


SCORES = {1: (2, 1, 0), 2: (1, 1, 1), 401: (2, 2, 2), 568: (0, 1, 2), 701: (1, 0, 0), 801: (2, 1, 1), 901: (1, 2, 1)}


def script(judge: ScriptedJudge) -> None:
    formats = [
        lambda c, r, a: f"Consistency: {c}\nRealism: {r}\nAesthetic Quality: {a}",
        lambda c, r, a: f"**Consistency:** {c}\n**Realism:** {r}\n**Aesthetic Quality:** {a}",
        lambda c, r, a: json.dumps({"consistency": c, "realism": r, "aesthetic_quality": a}),
    ]
    for index, (pid, (c, r, a)) in enumerate(SCORES.items()):
        judge.on(f"wise-{pid}:", ok(formats[index % 3](c, r, a)))
    judge.on("wise-568:", error(429, retry_after="0"), ok("Consistency: 0\nRealism: 1\nAesthetic Quality: 2"))


def test_wiscore_and_categories() -> None:
    assert wiscore(2, 2, 2) == pytest.approx(1.0) and wiscore(2, 1, 0) == pytest.approx(0.8) and wiscore(0, 0, 0) == 0.0
    assert [category_of(i).name for i in (1, 400, 401, 567, 568, 700, 701, 800, 801, 900, 901, 1000)] == [
        "cultural", "cultural", "time", "time", "space", "space", "biology", "biology", "physics", "physics", "chemistry", "chemistry"]
    assert sum(c.weight for c in CATEGORIES) == pytest.approx(1.0)
    with pytest.raises(EvalInputError, match="outside 1-1000"):
        category_of(1001)


def test_data_loading_reads_original_files_and_refuses_verified(tmp_path: Path) -> None:
    data = write_wise_data(tmp_path)
    prompts, files = load_wise_prompts([data])
    assert [p.prompt_id for p in prompts] == [1, 2, 3, 401, 568, 701, 801, 901]
    assert prompts[0].prompt.startswith("wise-1: the traditional") and prompts[0].subcategory == "Festival"
    assert len(files) == 3
    rewrite, _ = load_wise_prompts([data], prompt_set="rewrite")
    assert [p.prompt for p in rewrite] == ["wise-1 rewritten: dumplings"]
    verified = tmp_path / "data_verified"
    verified.mkdir()
    (verified / "cultural_common_sense_verified.json").write_text("[]", encoding="utf-8")
    with pytest.raises(EvalInputError, match="WISE_Verified"):
        load_wise_prompts([verified])
    (tmp_path / "bad.json").write_text('[{"id": 1, "prompt": "x"}]', encoding="utf-8")
    with pytest.raises(EvalInputError, match="record 0: expected"):
        load_wise_prompts([tmp_path / "bad.json"])
    with pytest.raises(EvalInputError, match="appears twice"):
        load_wise_prompts([data, data / "natural_science.json"])


def test_evaluate_wise_end_to_end_with_resume(judge: ScriptedJudge, tmp_path: Path) -> None:
    data = write_wise_data(tmp_path)
    images = tmp_path / "images"
    for pid in (1, 2, 401, 568, 701, 801):  # 3 never has an image; 901 comes later
        make_image(images / f"{pid}.png")
    script(judge)
    app = typer.Typer()
    register(app)
    args = ["evaluate-wise", "--data", str(data), "--images", str(images), "--out-dir", str(tmp_path / "out"),
            "--judge-model", "judge-test", "--judge-base-url", judge.base_url, "--max-workers", "3"]
    first = CliRunner().invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    summary = json.loads((tmp_path / "out" / "wise_summary.json").read_text())
    assert summary["protocol"] == "WISE (original)" and "not comparable with WISE_Verified" in summary["protocol_note"]
    cats = summary["by_category"]
    # cultural: (0.8 + 0.5) / 2 over the scored; prompt 3 has no image -> missing=0 gives * 2/3
    assert cats["cultural"]["wiscore"] == pytest.approx(0.65)
    assert cats["cultural"]["wiscore_missing_zero"] == pytest.approx(0.65 * 2 / 3, abs=1e-6)
    assert (cats["cultural"]["count"], cats["cultural"]["scored"], cats["cultural"]["missing_or_failed"]) == (3, 2, 1)
    assert cats["time"]["wiscore"] == 1.0 and cats["space"]["wiscore"] == pytest.approx(0.2)
    assert cats["chemistry"]["wiscore"] is None
    # chemistry has no score: no overall; the partial one renormalises the weights
    assert summary["overall"] is None and summary["categories_without_scores"] == ["chemistry"]
    partial = (0.4 * 0.65 + 0.167 * 1.0 + 0.133 * 0.2 + 0.1 * 0.35 + 0.1 * 0.85) / 0.9
    assert summary["overall_partial"] == pytest.approx(partial, abs=1e-6)
    assert summary["missing"]["3"].startswith("missing_generated_image")
    assert "partial WiScore" in first.output
    assert len(judge.requests_for("wise-568:")) == 2  # 429, then the answer
    request = judge.requests_for("wise-1:")[0]
    assert 'EXPLANATION: "explains wise-1"' in request.text and len(request.images()) == 1
    assert request.body["max_tokens"] == 2000 and request.body["temperature"] == 0

    make_image(images / "901.png")
    judged_before = len(judge.requests)
    second = CliRunner().invoke(app, [*args, "--resume"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert [r.marker for r in judge.requests[judged_before:]] == ["wise-901:"]
    summary = json.loads((tmp_path / "out" / "wise_summary.json").read_text())
    overall = 0.4 * 0.65 + 0.167 * 1.0 + 0.133 * 0.2 + 0.1 * 0.35 + 0.1 * 0.85 + 0.1 * 0.6
    assert summary["overall"] == pytest.approx(overall, abs=1e-6)
    assert summary["overall_missing_zero"] == pytest.approx(overall - 0.4 * 0.65 / 3, abs=1e-6)
    assert summary["by_subcategory"]["Festival"]["wiscore"] == pytest.approx(0.8)
    lines = (tmp_path / "out" / "wise_eval.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt_id"] for line in lines] == [1, 2, 3, 401, 568, 701, 801, 901]
    assert "WISE (original) overall WiScore" in second.output
    assert (tmp_path / "out" / "wise_summary.csv").read_text().splitlines()[1].startswith("overall,weighted,")


def test_evaluate_wise_from_stage2_results(judge: ScriptedJudge, tmp_path: Path) -> None:
    data = write_wise_data(tmp_path)
    run = tmp_path / "run"
    make_image(run / "img" / "a.png")
    rows = [{"id": 1, "prompt": "wise-1", "output_path": "img/a.png", "success": True},
            {"prompt_id": 2, "output_path": None, "success": False, "render_error": "timeout"}]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    script(judge)
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["evaluate-wise", "--data", str(data / "cultural_common_sense.json"),
                                      "--results", str(run / "results.jsonl"), "--out-dir", str(tmp_path / "o"),
                                      "--judge-model", "m", "--judge-base-url", judge.base_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "wise_summary.json").read_text())
    assert summary["by_category"]["cultural"]["scored"] == 1
    assert summary["missing"] == {"2": "render_failed: timeout", "3": "missing_generated_image: no result row for this prompt_id"}


def test_evaluate_wise_input_errors(judge: ScriptedJudge, tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    data = write_wise_data(tmp_path)
    both = CliRunner().invoke(app, ["evaluate-wise", "--data", str(data), "--out-dir", str(tmp_path / "o"),
                                    "--judge-model", "m", "--judge-base-url", judge.base_url])
    assert both.exit_code == 2 and "exactly one of --images DIR or --results FILE" in both.output
    none = CliRunner().invoke(app, ["evaluate-wise", "--data", str(tmp_path / "nope"), "--images", str(tmp_path),
                                    "--out-dir", str(tmp_path / "o"), "--judge-model", "m", "--judge-base-url", judge.base_url])
    assert none.exit_code == 2 and "WISE data not found" in none.output
