"""FactIP: its own arithmetic on a worked example, and the whole command on a fixture in FactIP's
format (id-keyed test.json, two ground-truth images per item) scored by the scripted judge."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from genevolve_graph.cli.evaluate import register
from genevolve_graph.evaluation.factip import build_factip_summary, parse_factip
from tests.evaluation.bench_fixtures import (
    GEN_SIZE,
    GT1_SIZE,
    GT2_SIZE,
    build_factip,
    factip_reply,
    script_factip,
)
from tests.evaluation.judge_server import Reply, ScriptedJudge, ok


def rec(sid: str, category: str, c: int, q: int, a: int, ip: int) -> dict:
    return {"id": sid, "category": category, "status": "scored",
            "scores": {"clarity": c, "content_quality": q, "aesthetics": a, "text_relevance_ip": ip,
                       "overall": 0.05 * c + 0.10 * q + 0.10 * a + 0.75 * ip}}


def test_worked_example_micro_total_and_category_means() -> None:
    """FactIP: item overall = .05 C + .10 Q + .10 A + .75 IP; category = mean x 10; total = mean over all items x 10."""
    records = [rec("a", "Character", 10, 10, 10, 10), rec("b", "Character", 0, 0, 0, 0), rec("c", "Character", 10, 10, 10, 10),
               rec("d", "Object", 0, 10, 0, 2),
               {"id": "e", "category": "Object", "status": "failed", "scores": None, "error": "judge_failed: x"}]
    summary = build_factip_summary(records)
    # Character: overall items 10, 0, 10 -> mean 6.6667 -> 66.6667; Object: d = 0 + 1 + 0 + 1.5 = 2.5 -> 25
    assert summary["by_category"]["Character"]["overall"] == pytest.approx(200 / 3, abs=1e-6)
    assert summary["by_category"]["Object"]["overall"] == 25.0
    assert summary["by_category"]["Object"]["content_quality"] == 100.0
    # total is micro: (10 + 0 + 10 + 2.5) / 4 x 10 = 56.25, not the mean of categories (45.83)
    assert summary["all"]["overall"] == 56.25
    # failures as zero: 56.25 x 4/5 = 45
    assert summary["all"]["overall_missing_zero"] == 45.0 and summary["all"]["missing_or_failed"] == 1


def test_reply_parsing_ignores_the_judges_overall() -> None:
    scores, _ = parse_factip('```json\n{"clarity": 7.6, "content_quality": "8", "aesthetics": 6, "text_relevance_ip": 9,'
                                     ' "overall_score": 2, "rationale": "a; b"}\n```')
    assert (scores["clarity"], scores["content_quality"], scores["judge_overall_score"]) == (8.0, 8.0, 2.0)
    assert scores["overall"] == pytest.approx(0.05 * 8 + 0.1 * 8 + 0.1 * 6 + 0.75 * 9)
    with pytest.raises(ValueError, match="text_relevance_ip"):
        parse_factip('{"clarity": 1, "content_quality": 1, "aesthetics": 1}')
    with pytest.raises(ValueError, match="outside"):
        parse_factip('{"clarity": 11, "content_quality": 1, "aesthetics": 1, "text_relevance_ip": 1}')


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def args_for(judge: ScriptedJudge, data: Path, gt: Path, results: Path, *extra: str) -> list[str]:
    return ["evaluate", "--benchmark", "factip", "--data", str(data), "--gt-root", str(gt), "--results", str(results),
            "--judge-model", "judge-fi", "--judge-base-url", judge.base_url, "--judge-api-key", "k", *extra]


def _size(data_url: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as im:
        return im.size


def test_factip_fixture_end_to_end(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    data, gt, results = build_factip(tmp_path)
    script_factip(judge)
    result = CliRunner().invoke(app, args_for(judge, data, gt, results, "--max-workers", "2"), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((results.parent / "factip_summary.json").read_text())
    # f1: .4 + .6 + .7 + 6.75 = 8.45; f2: .5 + 1 + 1 + 3 = 5.5; f4: .3 + .8 + .5 + 7.5 = 9.1; f3 judge failed; f5 no seed2
    cats = summary["by_category"]
    anim = cats["Animation"]
    assert (anim["count"], anim["scored"]) == (3, 2)
    assert (anim["clarity"], anim["content_quality"], anim["aesthetics"], anim["text_relevance_ip"]) == (90.0, 80.0, 85.0, 65.0)
    assert anim["overall"] == pytest.approx((8.45 + 5.5) / 2 * 10) and anim["overall_missing_zero"] == pytest.approx(69.75 * 2 / 3, abs=1e-5)
    assert cats["Landmark"]["count"] == 1 and cats["Landmark"]["overall"] == pytest.approx(91.0)  # a category with one item
    assert cats["Celebrity"]["scored"] == 0 and cats["Celebrity"]["overall"] is None
    a = summary["all"]
    assert (a["count"], a["scored"], a["missing_or_failed"]) == (5, 3, 2)
    assert (a["clarity"], a["content_quality"]) == (80.0, 80.0)
    assert a["aesthetics"] == pytest.approx(220 / 3, abs=1e-5) and a["text_relevance_ip"] == pytest.approx(230 / 3, abs=1e-5)
    assert a["overall"] == pytest.approx(23.05 / 3 * 10, abs=1e-5)  # micro: (8.45 + 5.5 + 9.1) / 3 x 10 = 76.8333
    assert a["overall_missing_zero"] == pytest.approx(23.05 / 3 * 10 * 3 / 5, abs=1e-5)  # 46.1
    assert "missing_ground_truth" in summary["missing"]["f5"] and "seed2" in summary["missing"]["f5"]
    assert "judge_failed" in summary["failed"]["f3"]
    assert "FactIP overall 76.8 (failures left out; counted as 0: 46.1)" in result.output
    # the judge sees the request, both ground-truth images, then the generated one, at temperature 0
    request = judge.requests_for("case-f1:")[0]
    assert [_size(u) for u in request.images()] == [GT1_SIZE, GT2_SIZE, GEN_SIZE]
    assert request.body["temperature"] == 0
    parts = request.body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "text", "image_url", "text"]
    text = "\n".join(p.get("text", "") for p in parts)
    assert text.index("case-f1:") < text.index("Reference A") < text.index("Reference B") < text.index("the one you grade")
    records = [json.loads(line) for line in (results.parent / "factip_eval.jsonl").read_text().splitlines()]
    assert records[0]["item"] == {"id": "f1", "index": 0, "ip_name": "Subject f1", "image_prompt": "case-f1: the subject at dawn",
                                  "source_category": "Animation", "country": "JP", "language": "ja"}
    assert records[0]["references"][0].endswith("Animation/f1/seed1.png")


def test_ground_truth_never_leaves_gt_root(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    data, gt, results = build_factip(tmp_path)
    items = json.loads(data.read_text())
    items["f1"]["source_category"] = "../../run"  # would reach run/images/... outside GT
    data.write_text(json.dumps(items))
    script_factip(judge)
    assert CliRunner().invoke(app, args_for(judge, data, gt, results), catch_exceptions=False).exit_code == 0
    summary = json.loads((results.parent / "factip_summary.json").read_text())
    assert "ground_truth_outside_gt_root" in summary["failed"]["f1"]
    assert not judge.requests_for("case-f1:")


def test_resume_after_a_kill_judges_only_what_is_left(app: typer.Typer, judge: ScriptedJudge, tmp_path: Path) -> None:
    data, gt, results = build_factip(tmp_path)
    script_factip(judge)
    judge.on("case-f2:", Reply(text=factip_reply(10, 10, 10, 4, 6), delay=60))  # hangs until the process is killed
    log = results.parent / "factip_eval.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path.cwd()), "LANGSMITH_TRACING": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "genevolve_graph.cli", *args_for(judge, data, gt, results, "--max-workers", "1")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not judge.requests_for("case-f2:"):
            time.sleep(0.1)
        assert judge.requests_for("case-f2:"), "the run never reached f2"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    kept = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in kept] == [("f1", "scored")]
    assert not (results.parent / "factip_summary.json").exists()
    before = {m: len(judge.requests_for(m)) for m in ("case-f1:", "case-f2:", "case-f3:", "case-f4:")}
    judge.on("case-f2:", ok(factip_reply(10, 10, 10, 4, 6)))
    judge.on("case-f3:", ok(factip_reply(0, 0, 0, 0, 0)))
    result = CliRunner().invoke(app, args_for(judge, data, gt, results, "--resume"), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(judge.requests_for("case-f1:")) == before["case-f1:"]  # kept from the killed run
    assert len(judge.requests_for("case-f2:")) == before["case-f2:"] + 1
    summary = json.loads((results.parent / "factip_summary.json").read_text())
    assert summary["all"]["scored"] == 4 and list(summary["missing"]) == ["f5"]
    # a second resume judges only the failed and missing items again (f5 still has no ground truth: no call)
    calls = len(judge.requests)
    assert CliRunner().invoke(app, args_for(judge, data, gt, results, "--resume"), catch_exceptions=False).exit_code == 0
    assert len(judge.requests) == calls
