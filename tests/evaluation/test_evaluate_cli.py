"""``genevolve-graph evaluate`` end to end: real HTTP judge, stage-2 results, summaries, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genevolve_graph.cli.evaluate import register
from tests.evaluation.conftest import kscore_reply, make_image
from tests.evaluation.judge_server import ScriptedJudge, error, ok


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(f, v, t, a) -> str:
    return f"rationale: Constraints: listed.\nfaithfulness: {f}\nvisual_correctness: {v}\ntext_accuracy: {t}\naesthetics: {a}\ntext_accuracy_na: false"


def build_run(tmp: Path) -> tuple[Path, Path]:
    """Seven stage-2 samples: three scorable, a failed render, a missing ground truth, a missing
    generated image and one the judge never answers readably. Returns (results, gt root)."""
    gt_root, run = tmp / "bench", tmp / "run"
    for name in ("a1", "a2", "a3", "a4", "a6", "a7"):
        make_image(gt_root / "images" / f"{name}.png")
    for name in ("a1", "a2", "a3", "a5", "a7"):
        make_image(run / "images" / f"{name}.png")

    def row(sid, eval_type, category, difficulty, **extra):
        base = {"id": sid, "question": f"case-{sid}: draw it", "gt_image": f"images/{sid}.png", "eval_type": eval_type,
                "category": category, "difficulty": difficulty, "prompt": f"case-{sid}: draw it",
                "gen_prompt": "...", "reference_images": [], "messages": [], "termination": "answer", "rounds": 2,
                "error": None, "thread_id": sid, "output_path": f"images/{sid}.png", "success": True,
                "render_error": None, "backend": "preview"}
        base.update(extra)
        return base

    rows = [
        row("a1", "KA", "history", "hard"),
        row("a2", "KA", "history", "medium"),
        row("a3", "QA", "anime", "hard"),
        row("a4", "QA", "anime", "hard", success=False, output_path=None, render_error="CUDA out of memory"),
        row("a5", "KA", "film", "medium", gt_image="images/a5.png"),  # no such ground truth
        row("a6", "QA", "anime", "medium"),  # no generated image on disk
        row("a7", "KA", "history", "hard"),
    ]
    results = run / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return results, gt_root


def script(judge: ScriptedJudge, *, a7_readable: bool) -> None:
    judge.on("case-a1", ok(kscore_reply(1, 0.5, 1, 0.5)))
    judge.on("case-a2", ok("```json\n" + kscore_reply(0.5, 0, 0, 1, na=True) + "\n```"))
    judge.on("case-a3", error(429, retry_after="0"), ok(flat(1, 1, 1, 0)))
    judge.on("case-a7", ok(kscore_reply(1, 1, 1, 1)) if a7_readable else ok("Looks great, 10/10!"))


def test_evaluate_scores_summarises_and_resumes(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    results, gt_root = build_run(tmp_path)
    script(judge, a7_readable=False)
    args = ["evaluate", "--results", str(results), "--gt-root", str(gt_root), "--judge-model", "judge-test",
            "--judge-base-url", judge.base_url, "--judge-api-key", "k", "--max-workers", "3"]
    first = invoke(app, *args)
    assert first.exit_code == 0, first.output
    run = results.parent
    summary = json.loads((run / "summary.json").read_text())
    a = summary["all"]
    # hand-computed: scored a1, a2 (text n/a), a3; F 2.5/3, V .5, T (1+1)/2, A .5; means rounded to 4
    # decimals first as the released evaluator (F .8333) -> .73333 (unrounded .733333); missing=0 * 3/7
    assert (a["count"], a["scored"], a["missing_or_failed"], a["text_applicable"]) == (7, 3, 4, 2)
    assert a["overall"] == pytest.approx(0.73333, abs=1e-9) and a["overall_unrounded"] == pytest.approx(0.733333, abs=1e-6)
    assert a["overall_missing_zero"] == pytest.approx(0.73333 * 3 / 7, abs=1e-6)
    assert summary["by_eval_type"]["KA"]["overall"] == pytest.approx(0.65)
    assert summary["by_eval_type"]["KA"]["overall_missing_zero"] == pytest.approx(0.325)
    assert summary["by_eval_type"]["QA"]["overall_missing_zero"] == pytest.approx(0.3)
    assert summary["by_category"]["film"]["overall"] is None
    assert summary["by_difficulty"]["medium"]["overall_missing_zero"] == pytest.approx(0.35 / 3, abs=1e-6)
    assert summary["judge_model"] == "judge-test" and summary["rubric"]["source"] == "builtin:kscore"
    assert summary["missing"]["a4"] == "render_failed: CUDA out of memory"
    assert summary["missing"]["a5"].startswith("missing_ground_truth: images/a5.png not found")
    assert summary["missing"]["a6"].startswith("missing_generated_image: images/a6.png not found")
    assert summary["failed"]["a7"].startswith("judge_failed: could not read the KScore judge output after 3 replies")
    assert "overall 0.73333 " in first.output and "4 missing or failed" in first.output

    records = [json.loads(line) for line in (run / "results_eval.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["a1", "a2", "a3", "a4", "a5", "a6", "a7"]
    r2 = records[1]
    assert r2["status"] == "scored" and r2["scores"]["text_accuracy_na"] is True and r2["scores"]["overall"] == pytest.approx(0.35)
    assert r2["judge_model"] == "judge-test" and r2["raw"].startswith("```json") and r2["rationale"].startswith("Constraints")
    assert records[6]["status"] == "failed" and records[6]["raw"] is None
    csv_rows = list(csv.DictReader((run / "summary.csv").open()))
    assert csv_rows[0]["split"] == "all" and csv_rows[0]["count"] == "7" and csv_rows[0]["missing_or_failed"] == "4"

    # no requests for samples that could not be judged; three replies for a7; 429 retried for a3
    assert {r.marker for r in judge.requests} == {"case-a1", "case-a2", "case-a3", "case-a7"}
    assert len(judge.requests_for("case-a3")) == 2 and len(judge.requests_for("case-a7")) == 3

    # an existing log is not thrown away silently
    again = invoke(app, *args)
    assert again.exit_code == 2 and "pass --resume" in again.output

    # resume: only the unscored samples are judged again, and a7 is now readable
    before = {m: len(judge.requests_for(m)) for m in ("case-a1", "case-a2", "case-a3")}
    judge.reset()
    script(judge, a7_readable=True)
    resumed = invoke(app, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert [r.marker for r in judge.requests] == ["case-a7"], before
    summary = json.loads((run / "summary.json").read_text())
    assert summary["all"]["scored"] == 4 and "a7" not in summary["failed"]
    lines = (run / "results_eval.jsonl").read_text().splitlines()
    assert len(lines) == 7  # compacted: one line per sample


def test_interrupted_run_keeps_finished_samples_and_resumes(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    """A judge that rejects the key stops the run with one line; finished samples were written
    (fsynced) as they finished, and --resume judges only the rest."""
    results, gt_root = build_run(tmp_path)
    script(judge, a7_readable=True)
    judge.on("case-a3", error(401))
    args = ["evaluate", "--results", str(results), "--gt-root", str(gt_root), "--judge-model", "judge-test",
            "--judge-base-url", judge.base_url, "--max-workers", "1"]
    stopped = invoke(app, *args)
    assert stopped.exit_code == 2
    assert "refused the request: HTTP 401" in stopped.output and "--resume" in stopped.output
    written = [json.loads(line) for line in (results.parent / "results_eval.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in written][:2] == [("a1", "scored"), ("a2", "scored")]
    assert "a3" not in {r["id"] for r in written} and "a7" not in {r["id"] for r in written}
    assert not (results.parent / "summary.json").exists()

    judge.reset()
    script(judge, a7_readable=True)
    resumed = invoke(app, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(r.marker for r in judge.requests) == ["case-a3", "case-a3", "case-a7"]  # a3: 429 then answer
    assert json.loads((results.parent / "summary.json").read_text())["all"]["scored"] == 4


def test_json_array_results_out_dir_and_prompt_file(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    results, gt_root = build_run(tmp_path)
    rows = [json.loads(line) for line in results.read_text().splitlines()][:2]
    array = results.parent / "results.json"
    array.write_text(json.dumps(rows), encoding="utf-8")
    rubric = tmp_path / "rubric.md"
    rubric.write_text("Grade strictly. Reply in JSON.", encoding="utf-8")
    script(judge, a7_readable=True)
    out = tmp_path / "eval-out"
    result = invoke(app, "evaluate", "--results", str(array), "--gt-root", str(gt_root), "--judge-model", "judge-test",
                    "--judge-base-url", judge.base_url, "--out-dir", str(out), "--judge-prompt-file", str(rubric), "--rpm", "6000")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["all"]["count"] == 2 and summary["rubric"]["source"] == str(rubric.resolve())
    assert all(r.body["messages"][0]["content"] == "Grade strictly. Reply in JSON." for r in judge.requests)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--results", "{tmp}/nope.jsonl"], "results file not found"),
        (["--results", "{tmp}/bad.jsonl"], "line 2 is not valid JSON"),
        (["--results", "{tmp}/dup.jsonl"], "more than one sample with id 'x'"),
        (["--results", "{tmp}/ok.jsonl", "--judge-prompt-file", "{tmp}/none.md"], "judge prompt file not found"),
        (["--results", "{tmp}/ok.jsonl", "--gt-root", "{tmp}/nowhere"], "--gt-root"),
        (["--results", "{tmp}/ok.jsonl", "--resume", "--overwrite"], "exclude each other"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path, extra: list[str], message: str) -> None:
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n{oops\n', encoding="utf-8")
    (tmp_path / "dup.jsonl").write_text('{"id": "x"}\n{"id": "x"}\n', encoding="utf-8")
    (tmp_path / "ok.jsonl").write_text('{"id": "x", "prompt": "p"}\n', encoding="utf-8")
    args = [a.format(tmp=tmp_path) for a in extra]
    result = invoke(app, "evaluate", *args, "--judge-model", "m", "--judge-base-url", judge.base_url)
    assert result.exit_code == 2
    assert message in result.output and result.output.startswith("error: ")
    assert result.output.count("\n") == 1
    assert judge.requests == []


def test_a_streak_of_judge_failures_stops_the_run(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    """An endpoint that only answers 500 stops the run after a streak instead of burning every sample."""
    image = make_image(tmp_path / "x.png")
    rows = [{"id": f"s{i}", "prompt": f"case-down {i}", "gt_image": str(image), "output_path": str(image)} for i in range(12)]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    judge.on("case-down", error(500))
    result = invoke(app, "evaluate", "--results", str(results), "--judge-model", "m", "--judge-base-url", judge.base_url,
                    "--max-workers", "1", "--max-retries", "0")
    assert result.exit_code == 2
    assert "the judge failed 8 samples in a row" in result.output and "HTTP 500" in result.output
    assert len(judge.requests) == 8
    assert len((tmp_path / "results_eval.jsonl").read_text().splitlines()) == 8


def test_a_sample_with_a_lone_surrogate_fails_alone(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    """Issue 12 item 8: a row whose text cannot be encoded is recorded as failed; the rest is judged."""
    results, gt_root = build_run(tmp_path)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    rows[1]["question"] = rows[1]["prompt"] = "case-a2: a cat \ud800"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    script(judge, a7_readable=True)
    args = ["evaluate", "--results", str(results), "--gt-root", str(gt_root), "--judge-model", "judge-test",
            "--judge-base-url", judge.base_url, "--judge-api-key", "k", "--max-workers", "3"]
    first = invoke(app, *args)
    assert first.exit_code == 0, first.output
    records = {r["id"]: r for r in map(json.loads, (results.parent / "results_eval.jsonl").read_text().splitlines())}
    assert records["a2"]["status"] == "failed" and "surrogate" in records["a2"]["error"]
    assert records["a1"]["status"] == records["a7"]["status"] == "scored"
    assert "case-a2" not in {r.marker for r in judge.requests}
    resumed = invoke(app, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
