"""``bench knowgen`` and ``bench factip``: stage 1, stage 2 and the benchmark's judge from a local
copy of the data set, in one resumable command (scripted policy and judge on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.evaluation.bench_fixtures import factip_reply
from tests.evaluation.conftest import kscore_reply
from tests.evaluation.judge_server import ScriptedJudge, ok

from .conftest import policy_args, request_text, script_for


@pytest.fixture
def judge() -> Iterator[ScriptedJudge]:
    server = ScriptedJudge().start()
    yield server
    server.stop()


def judge_args(judge: ScriptedJudge) -> list[str]:
    return ["--judge-model", "judge-b", "--judge-base-url", judge.base_url, "--judge-api-key", "k"]


def test_bench_knowgen_runs_three_stages_and_resumes(cli, tmp_path, scripted_server, judge) -> None:
    ids = ["k1", "k2", "k3"]
    server = scripted_server(script_for(ids, rounds=2))
    data = tmp_path / "KnowGen"
    (data / "images").mkdir(parents=True)
    items = []
    for sid, category in zip(ids, ("history", "anime", "anime"), strict=True):
        Image.new("RGB", (32, 32), (40, 200, 40)).save(data / "images" / f"{sid}.png")
        items.append({"id": sid, "prompt": request_text(sid), "meta": {"category": category, "difficulty": "easy"},
                      "gt_image": f"images/{sid}.png", "source": "wiki"})
    (data / "KnowGen-Bench.json").write_text(json.dumps(items), encoding="utf-8")
    judge.on(request_text("k1"), ok(kscore_reply(1, 1, 1, 1)))
    judge.on(request_text("k2"), ok(kscore_reply(1, 0.5, 0, 0.5)))
    judge.on(request_text("k3"), ok("no idea"))  # fails the first time
    out = tmp_path / "run"
    args = ["bench", "knowgen", "--data", data, "--out", out, "--renderer", "preview", *policy_args(server), *judge_args(judge)]
    first = cli(*args)
    assert first.exit_code == 0, first.stderr
    summary = json.loads((out / "eval" / "knowgen_summary.json").read_text())
    # science: k1 -> 1.0; pop: k2 (1, .5, 0, .5) -> .1 + .2 + 0 + .05 = .35, k3 failed; headline (1 + .35) / 2 = .675
    assert summary["by_group"]["science_and_knowledge"]["overall"] == 1.0
    assert summary["by_group"]["pop_culture_and_news"]["overall"] == 0.35
    assert summary["all"]["overall"] == 0.675 and list(summary["failed"]) == ["k3"]
    assert "KnowGen overall 0.6750" in first.stdout
    records = [json.loads(line) for line in (out / "eval" / "knowgen_eval.jsonl").read_text().splitlines()]
    assert records[0]["item"]["source"] == "wiki"
    calls = {m: len(judge.requests_for(request_text(m))) for m in ids}
    judge.on(request_text("k3"), ok(kscore_reply(0, 0, 0, 0)))
    again = cli(*args)
    assert again.exit_code == 0, again.stderr
    assert "this session: 0 rows" in again.stdout  # stages 1 and 2 were complete
    assert len(judge.requests_for(request_text("k1"))) == calls["k1"] and len(judge.requests_for(request_text("k2"))) == calls["k2"]
    assert len(judge.requests_for(request_text("k3"))) == calls["k3"] + 1  # only the failed item went back to the judge
    summary = json.loads((out / "eval" / "knowgen_summary.json").read_text())
    # pop: k2 and k3 (0,0,0,0): F .5, V .25, T 0, A .25 -> .05 + .1 + 0 + .025 = .175; headline (1 + .175) / 2 = .5875
    assert summary["all"]["overall"] == 0.5875 and not summary["failed"]


def test_bench_factip_needs_a_judge_model_before_any_rollout(cli, tmp_path, scripted_server, monkeypatch) -> None:
    monkeypatch.delenv("GENEVOLVE_JUDGE_MODEL", raising=False)
    server = scripted_server(script_for(["f1"], rounds=2))
    data = tmp_path / "FactIP"
    data.mkdir()
    (data / "test.json").write_text(json.dumps({"f1": {"image_prompt": request_text("f1"), "source_category": "Animation"}}))
    result = cli("bench", "factip", "--data", data, "--out", tmp_path / "run", *policy_args(server))
    assert result.exit_code == 2 and "--judge-model" in result.stderr
    assert not server.requests and not (tmp_path / "run").exists()


def test_bench_factip_runs_three_stages(cli, tmp_path, scripted_server, judge) -> None:
    ids = ["f1", "f2"]
    server = scripted_server(script_for(ids, rounds=2))
    data = tmp_path / "FactIP"
    items = {}
    for sid, category in zip(ids, ("Animation", "Landmark"), strict=True):
        items[sid] = {"index": len(items), "ip_name": sid, "image_prompt": request_text(sid), "source_category": category}
        for seed in ("seed1", "seed2"):
            (data / "GT" / category / sid).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (24, 24), (9, 9, 9)).save(data / "GT" / category / sid / f"{seed}.png")
    (data / "test_mini.json").write_text(json.dumps(items), encoding="utf-8")
    judge.on(request_text("f1"), ok(factip_reply(8, 6, 7, 9, 8)))
    judge.on(request_text("f2"), ok(factip_reply(6, 8, 5, 10, 9)))
    out = tmp_path / "run"
    result = cli("bench", "factip", "--data", data, "--split", "mini", "--gt-root", data / "GT", "--out", out, "--renderer", "preview",
                 *policy_args(server), *judge_args(judge))
    assert result.exit_code == 0, result.stderr
    summary = json.loads((out / "eval" / "factip_summary.json").read_text())
    # f1 8.45, f2 9.1 -> total (8.45 + 9.1) / 2 x 10 = 87.75; Animation 84.5, Landmark 91.0
    assert summary["all"]["overall"] == pytest.approx(87.75)
    assert summary["by_category"]["Animation"]["overall"] == pytest.approx(84.5)
    assert summary["by_category"]["Landmark"]["overall"] == pytest.approx(91.0)
    stage2 = [json.loads(line) for line in (out / "renders" / "results.jsonl").read_text().splitlines()]
    assert {r["id"] for r in stage2} == set(ids) and all(r["source_category"] for r in stage2)
