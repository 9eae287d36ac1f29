"""Summaries against hand-computed numbers (DESIGN.md §4), text-not-applicable and missing samples included."""

from __future__ import annotations

import csv
import io

import pytest

from genevolve_graph.evaluation.aggregate import build_summary, summarize, summary_csv


def scored(sid, eval_type, category, difficulty, f, v, t, a, na=False):
    return {"id": sid, "eval_type": eval_type, "category": category, "difficulty": difficulty, "status": "scored",
            "scores": {"faithfulness": f, "visual_correctness": v, "text_accuracy": 0.5 if na else t, "aesthetics": a,
                       "text_accuracy_na": na}, "error": None}


def unscored(sid, eval_type, category, difficulty, status, error):
    return {"id": sid, "eval_type": eval_type, "category": category, "difficulty": difficulty, "status": status,
            "scores": None, "error": error}


RECORDS = [
    scored("s1", "KA", "history", "hard", 1, 0.5, 1, 0.5),
    scored("s2", "KA", "history", "medium", 0.5, 0, None, 1, na=True),
    scored("s3", "QA", "anime", "hard", 1, 1, 1, 0),
    unscored("s4", "QA", "anime", "hard", "missing", "render_failed: CUDA out of memory"),
    unscored("s5", "KA", "film", "medium", "failed", "judge_failed: unreadable"),
]


def test_all_samples_by_hand() -> None:
    # F = (1 + .5 + 1)/3, V = (.5 + 0 + 1)/3, T over applicable s1, s3 = (1 + 1)/2, A = (.5 + 1 + 0)/3
    # overall = .1(2.5/3) + .4(.5) + .4(1) + .1(.5): the released evaluator rounds each mean to 4
    # decimals first (F 0.8333), giving 0.73333; unrounded 0.733333; missing=0: 0.73333 * 3/5
    # per-sample overalls .75, .35 (T n/a = .5), .9 -> mean 2/3: a different aggregation, reported beside
    s = summarize(RECORDS)
    assert (s["count"], s["scored"], s["missing_or_failed"], s["text_applicable"]) == (5, 3, 2, 2)
    assert s["faithfulness"] == pytest.approx(2.5 / 3)
    assert s["visual_correctness"] == pytest.approx(0.5)
    assert s["text_accuracy"] == pytest.approx(1.0)
    assert s["aesthetics"] == pytest.approx(0.5)
    assert s["overall"] == pytest.approx(0.73333, abs=1e-9)
    assert s["overall_unrounded"] == pytest.approx(0.733333, abs=1e-6)
    assert s["overall_missing_zero"] == pytest.approx(0.73333 * 3 / 5, abs=1e-6)
    assert s["overall_sample_mean"] == pytest.approx(2 / 3, abs=1e-6)


def test_groups_by_hand() -> None:
    summary = build_summary(RECORDS, judge_model="m")
    ka, qa = summary["by_eval_type"]["KA"], summary["by_eval_type"]["QA"]
    # KA: s1, s2 scored, s5 failed. F .75, V .25, T 1 (s1 only), A .75 -> .075 + .1 + .4 + .075 = .65; * 2/3
    assert (ka["count"], ka["scored"], ka["missing_or_failed"]) == (3, 2, 1)
    assert ka["overall"] == pytest.approx(0.65) and ka["overall_missing_zero"] == pytest.approx(0.65 * 2 / 3, abs=1e-6)
    # QA: s3 scored, s4 missing. .1 + .4 + .4 + 0 = .9; * 1/2
    assert qa["overall"] == pytest.approx(0.9) and qa["overall_missing_zero"] == pytest.approx(0.45)
    cats = summary["by_category"]
    assert cats["history"]["overall"] == pytest.approx(0.65) and cats["history"]["overall_missing_zero"] == pytest.approx(0.65)
    # film: nothing scored -> no dimension means, overall unknown, missing=0 gives 0
    assert cats["film"]["overall"] is None and cats["film"]["faithfulness"] is None and cats["film"]["overall_missing_zero"] == 0.0
    diff = summary["by_difficulty"]
    # hard: s1, s3 (+ s4 missing): F 1, V .75, T 1, A .25 -> .1 + .3 + .4 + .025 = .825; * 2/3
    assert diff["hard"]["overall"] == pytest.approx(0.825) and diff["hard"]["overall_missing_zero"] == pytest.approx(0.55)
    # medium: only s2 scored and its text is not applicable -> T = 0.5: .05 + 0 + .2 + .1 = .35; * 1/2
    med = diff["medium"]
    assert med["text_applicable"] == 0 and med["text_accuracy"] == 0.5
    assert med["overall"] == pytest.approx(0.35) and med["overall_missing_zero"] == pytest.approx(0.175)
    assert summary["missing"] == {"s4": "render_failed: CUDA out of memory"}
    assert summary["failed"] == {"s5": "judge_failed: unreadable"}
    assert summary["protocol"].startswith("KScore") and "pooled" in summary["aggregation"]


def test_records_without_group_fields_are_unknown_and_empty_sets_are_safe() -> None:
    summary = build_summary([{"id": "x", "status": "scored", "scores": RECORDS[0]["scores"]}])
    assert list(summary["by_eval_type"]) == ["unknown"]
    empty = summarize([])
    assert empty["count"] == 0 and empty["overall"] is None and empty["overall_missing_zero"] == 0.0


def test_csv_rows() -> None:
    rows = list(csv.DictReader(io.StringIO(summary_csv(build_summary(RECORDS)))))
    assert [(r["split"], r["group"]) for r in rows] == [
        ("all", "all"), ("eval_type", "KA"), ("eval_type", "QA"),
        ("category", "anime"), ("category", "film"), ("category", "history"),
        ("difficulty", "hard"), ("difficulty", "medium"),
    ]
    assert rows[0]["overall"] == "0.7333" and rows[0]["overall_unrounded"] == "0.7333" and rows[0]["overall_missing_zero"] == "0.4400" and rows[0]["missing_or_failed"] == "2"
    assert rows[4]["overall"] == "" and rows[4]["overall_missing_zero"] == "0.0000"


def test_overall_matches_the_released_evaluator_to_the_fourth_decimal() -> None:
    # Six samples: F 5/6, V 1/6, T 1/6, A 1/6. The released evaluator combines the means rounded
    # to 4 decimals: .1(.8333) + .4(.1667) + .4(.1667) + .1(.1667) = 0.23336 (0.2334 to 4 places);
    # the unrounded means give 0.233333 (0.2333): they differ at the 4th decimal.
    rows = [scored("r0", "KA", "c", "easy", 1, 1, 1, 1)]
    rows += [scored(f"r{i}", "KA", "c", "easy", 1, 0, 0, 0) for i in range(1, 5)]
    rows += [scored("r5", "KA", "c", "easy", 0, 0, 0, 0)]
    s = summarize(rows)
    assert s["overall"] == pytest.approx(0.23336, abs=1e-9) and round(s["overall"], 4) == 0.2334
    assert s["overall_unrounded"] == pytest.approx(0.233333, abs=1e-6) and round(s["overall_unrounded"], 4) == 0.2333
