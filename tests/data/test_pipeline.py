"""The whole pipeline on the bundled recipe with scripted endpoints, its exact funnel, and
its three outputs fed to the commands that read them (export, import-sft, train sft, the
GRPO dataset loader, bench genevolve, evaluate)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from genevolve_graph.testing.scripted_data import AUDITOR, EXPANDER, KSCORE, TEACHER, VISUAL, data_server

from .conftest import ROOT, cli, models_asked, read_jsonl

EXPECTED_HEADLINE = [
    ["requests", 19], ["teacher answered", 16], ["passed structural checks", 10], ["filtered trajectories", 7],
    ["SFT trajectories", 3], ["GT renders", 4], ["GT renders kept", 3], ["RL cases", 1], ["benchmark cases", 2],
]


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder_dir):
    """The bundled recipe built stage by stage (each call runs on the previous one's output)."""
    out = tmp_path_factory.mktemp("data") / "build"
    with data_server() as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENEVOLVE_DATA_BASE_URL", server.base_url)
        patch.setenv("GENEVOLVE_DATA_EMBEDDER", str(embedder_dir))
        for stages in ("requests,trajectories", "filter", "render,visual-filter,split"):
            result = cli("data", "build", "--recipes", "bundled:small", "--out", out, "--stages", stages, "--no-progress")
            assert result.exit_code == 0, result.stdout + result.stderr
        yield out, server


def test_the_funnel_of_the_bundled_recipe_is_exact(built):
    out, server = built
    result = cli("data", "report", out)
    assert result.exit_code == 0, result.stderr
    data = json.loads((out / "report" / "funnel.json").read_text())
    assert data["headline"] == EXPECTED_HEADLINE
    stages = {s["stage"]: s for s in data["stages"]}
    # requests: 8 cells, one expansion failed (infrastructure), one malformed entry, one near-duplicate
    assert stages["requests"]["cells"] == 8 and stages["requests"]["generated"] == 20
    assert stages["requests"]["dropped"] == {"near_duplicate": 1, "malformed_request": 1}
    assert stages["requests"]["infra_error"] == {"expander_error (cells)": 1}
    # trajectories: one teacher outage (infrastructure, not a drop), two trajectories without an answer
    assert stages["trajectories"]["dropped"] == {"termination_no_answer": 2}
    assert stages["trajectories"]["infra_error"] == {"teacher_error": 1}
    # filter: every programmatic check drops one bad trajectory kind; the audit drops the uncovered constraint
    assert stages["filter"]["dropped"] == {"missing_ordinal_binding": 2, "audit_constraint_coverage": 2, "url_or_id_leak": 1,
                                           "over_simple_program": 1, "invalid_reference": 1, "incomplete_tool_cycle": 1}
    assert stages["filter"]["infra_error"] == {"audit_judge_error": 1}
    assert stages["filter"]["check_failures"] == {"incomplete_tool_cycle": 1, "invalid_reference": 1, "url_or_id_leak": 1,
                                                  "missing_ordinal_binding": 2, "over_simple_program": 1}
    assert stages["render"]["selected_for_gt"] == 4 and stages["render"]["sft_view"] == 3
    assert stages["visual-filter"]["dropped"] == {"visual_quality": 1} and stages["visual-filter"]["infra_error"] == {}
    split = json.loads((out / "split.json").read_text())
    assert split["bench_by_eval_type"] == {"Knowledge-Anchored": 1, "Quality-Anchored": 1}
    assert "filtered trajectories: 7" in result.stdout and "infrastructure: audit_judge_error 1" in result.stdout
    markdown = (out / "report" / "funnel.md").read_text()
    assert "| filter | url_or_id_leak | quality | 1 |" in markdown and "| filter | audit_judge_error | infrastructure | 1 |" in markdown
    from PIL import Image

    with Image.open(out / "report" / "funnel.png") as chart:
        assert chart.size[0] > 400
    # the judges saw what the stages asked for: the auditor once per trajectory past the checks,
    # the visual judge once per render
    assert len(models_asked(server, AUDITOR)) == 10 and len(models_asked(server, VISUAL)) == 4
    assert len(models_asked(server, EXPANDER)) == 8


def test_every_trajectory_is_recorded_in_the_checkpointer(built):
    out, _ = built
    from genevolve_graph.persistence import open_checkpointer_sync
    from genevolve_graph.training.export import list_threads

    records = read_jsonl(out / "trajectories" / "results.jsonl")
    with open_checkpointer_sync(f"sqlite:///{out / 'trajectories' / 'trace.sqlite'}") as saver:
        threads = set(list_threads(saver))
    assert len(records) == 19 and {r["thread_id"] for r in records} <= threads
    # the request's hard constraints and benchmark fields travel with the trajectory
    assert all(r["hard_constraints"] and r["eval_type"] in ("Knowledge-Anchored", "Quality-Anchored") for r in records)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_sft_view_is_exactly_what_export_writes_and_shows_no_gt_image(built, tmp_path):
    out, _ = built
    sft = read_jsonl(out / "sft" / "train.jsonl")
    assert len(sft) == 3
    threads = [r["meta"]["thread_id"] for r in sft]
    args = ["export", "--checkpoint", f"sqlite:///{out / 'trajectories' / 'trace.sqlite'}", "--format", "sft",
            "--out", tmp_path / "export" / "sft.jsonl", "--quiet"]
    for thread in threads:
        args += ["--thread", thread]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    exported = read_jsonl(tmp_path / "export" / "sft.jsonl")
    assert exported == sft  # same records, same content-addressed image names
    for record in sft:
        for image in record["images"]:
            assert _digest(out / "sft" / image) == _digest(tmp_path / "export" / image)
    gt = {_digest(p) for p in (out / "render" / "images").glob("*.png")}
    assert gt and not gt & {_digest(out / "sft" / image) for record in sft for image in record["images"]}
    # no request of the SFT view reappears in RL or the benchmark
    rl_ids = {r["id"] for r in read_jsonl(out / "rl" / "train.jsonl")}
    bench_ids = {r["id"] for r in read_jsonl(out / "bench" / "test.jsonl")}
    assert not {r["meta"]["row_id"] for r in sft} & (rl_ids | bench_ids) and not rl_ids & bench_ids
    assert cli("import-sft", "--data", out / "sft").exit_code == 0


def test_the_rl_view_loads_in_the_grpo_dataset_loader(built):
    out, _ = built
    pytest.importorskip("datasets", reason="the GRPO dataset needs the train extra")
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.training.data import build_dataset, read_rows

    rows = read_rows(out / "rl" / "train.jsonl", out / "rl")
    assert [r["id"] for r in rows] == ["poster.landmark_facts.subject_photo.text.medium.01"]
    assert Path(rows[0]["gt_image"]).is_file() and rows[0]["gt_image"].startswith(str((out / "rl").resolve()))
    dataset = build_dataset(rows, AgentContext(renderer="none"))
    assert dataset[0]["prompt"][-1]["content"].startswith("Make a printed poster of the Eiffel Tower")


def test_the_bench_view_runs_in_bench_genevolve_and_evaluate(built, tmp_path):
    out, server = built
    rows = read_jsonl(out / "bench" / "test.jsonl")
    assert all(set(r) >= {"id", "question", "gt_image", "eval_type", "category", "difficulty"} for r in rows)
    run = tmp_path / "bench-run"
    result = cli("bench", "genevolve", "--data", out / "bench", "--out", run, "--renderer", "preview", "--policy", "openai",
                 "--base-url", server.base_url, "--model", TEACHER, "--retry-delay", "0.01", "--no-progress")
    assert result.exit_code == 0, result.stdout + result.stderr
    result = cli("evaluate", "--results", run / "renders" / "results.jsonl", "--gt-root", out / "bench",
                 "--judge-model", KSCORE, "--judge-base-url", server.base_url, "--max-retries", "0")
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads((run / "renders" / "summary.json").read_text())
    assert summary["all"]["count"] == 2 and summary["all"]["scored"] == 2
    assert set(summary["by_eval_type"]) == {"Knowledge-Anchored", "Quality-Anchored"}


def test_a_finished_build_resumes_as_a_no_op(built):
    out, server = built
    before = len(server.requests)
    split_before = (out / "split.json").read_text()
    result = cli("data", "build", "--recipes", "bundled:small", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert len(server.requests) == before  # nothing asked again: every item of every stage was recorded
    assert json.loads((out / "split.json").read_text()) == json.loads(split_before)


def test_train_sft_takes_one_step_on_the_sft_view(built, tmp_path):
    out, _ = built
    pytest.importorskip("trl", reason="train sft needs the sft extra")
    from genevolve_graph.training.sft_data import load_training_records

    from ..training_export.tiny import save_tiny_model

    records, _ = load_training_records(out / "sft")
    model = save_tiny_model(tmp_path / "tiny", [m.text() for r in records for m in r.messages] * 2, vocab_size=1024)
    result = cli("train", "sft", "--data", out / "sft", "--model", model, "--out", tmp_path / "ckpt", "--max_steps", "1",
                 "--per_device_train_batch_size", "1", "--logging_steps", "1", "--save_strategy", "no", "--use_cpu", "True",
                 "--bf16", "False", "--activation_checkpointing", "False", "--dataloader_num_workers", "0",
                 "--max_length", "8192", "--seed", "0")
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["records"] == 3 and summary["steps"] == 1 and summary["first_loss"] > 0


def test_the_docs_funnel_table_is_the_reports_headline():
    """Issue 24, item 14: docs/data.md's funnel rows differed from what ``data report`` prints."""
    text = (ROOT / "docs" / "data.md").read_text()
    table = text.split("| step | count | drops on the way |")[1].split("\n\n")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")[:2]] for line in table.strip().splitlines()[1:]]
    assert [[name, int(count)] for name, count in rows] == EXPECTED_HEADLINE


def test_the_funnel_chart_draws_the_fork_the_drop_reasons_and_infrastructure_from_the_cells(built, tmp_path):
    """Issue 24, item 13: funnel.png stacked the SFT and GT branches as if consecutive, began at
    the requests, and showed neither drop reasons nor infrastructure failures."""
    from genevolve_graph.data.report import chart_rows, write_report

    out, _ = built
    data, report_dir = write_report(out, tmp_path / "report")
    rows = chart_rows(data)
    assert [(r.branch, r.label) for r in rows] == [
        ("", "cells"), ("", "requests written (21)"), ("", "teacher trajectories"), ("", "checks and audit"),
        ("sft", "SFT view"), ("gt", "candidates"), ("gt", "render"), ("gt", "visual filter"), ("gt", "RL / benchmark split"),
    ]
    seg = {r.label: r.segments for r in rows}
    assert seg["cells"] == [("kept", "expanded", 7), ("infra", "expander_error", 1)]
    assert ("infra", "teacher_error", 1) in seg["teacher trajectories"] and ("dropped", "termination_no_answer", 2) in seg["teacher trajectories"]
    assert ("infra", "audit_judge_error", 1) in seg["checks and audit"] and ("dropped", "url_or_id_leak", 1) in seg["checks and audit"]
    # the fork: both branches start from the 7 filtered trajectories
    assert seg["SFT view"][0][2] + seg["candidates"][0][2] == 7
    assert seg["RL / benchmark split"] == [("rl", "RL cases", 1), ("bench", "benchmark cases", 2)]
    assert (report_dir / "funnel.png").stat().st_size > 10_000
