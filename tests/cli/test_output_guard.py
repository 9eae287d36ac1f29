"""No command writes over one of its inputs: an output that is an input (by name, through a
symlink or a hard link) is one line naming both paths, exit code 2, and nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genevolve_graph.cli import app as cli
from genevolve_graph.safety.file_guard import OutputOverwritesInput, check_outputs, check_replaced_folder, same_file

cli._register_commands()
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(cli.app, [str(a) for a in args])


def refused(result, *paths: object) -> str:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for path in paths:
        assert str(path) in errors[0], errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory) -> Path:
    """A run folder of the offline planner: program.json, trace.sqlite."""
    out = tmp_path_factory.mktemp("recorded") / "genevolve-out"
    result = invoke("run", "a red fox in snow", "--out", out, "--renderer", "none", "-q")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stage1")
    rows = folder / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "prompt": f"a fox number {i}"}) + "\n" for i in ("a", "b")), encoding="utf-8")
    result = invoke("batch", "--input", rows, "--out", folder / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    return folder / "run"


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("how", ["same-name", "symlink", "hard-link"])
def test_export_refuses_to_write_over_its_trace_database(how, recorded_run, tmp_path):
    db = tmp_path / "X.sqlite"
    db.write_bytes((recorded_run / "trace.sqlite").read_bytes())
    before = db.read_bytes()
    out = {"same-name": db, "symlink": tmp_path / "link.sqlite", "hard-link": tmp_path / "hard.sqlite"}[how]
    if how == "symlink":
        out.symlink_to(db)
    elif how == "hard-link":
        os.link(db, out)
    result = invoke("export", "--out", out, "--checkpoint", f"sqlite:///{db}")
    message = refused(result, out, db)
    assert "--out" in message and "--checkpoint" in message and "Choose another --out" in message
    assert db.read_bytes() == before
    assert not (tmp_path / "images").exists()


def test_export_refuses_to_write_over_eval_results(recorded_run, tmp_path):
    scores = tmp_path / "results_eval.jsonl"
    scores.write_text('{"id": "a", "overall": 0.5}\n', encoding="utf-8")
    result = invoke("export", "--out", scores, "--checkpoint", f"sqlite:///{recorded_run / 'trace.sqlite'}", "--eval", scores)
    refused(result, scores)
    assert scores.read_text(encoding="utf-8") == '{"id": "a", "overall": 0.5}\n'


def test_trl_export_never_replaces_the_run_folder_holding_the_trace(recorded_run, tmp_path):
    """``--out genevolve-out.jsonl --format trl`` saves the dataset to ``genevolve-out/``:
    deleting that folder would delete the trace database being exported."""
    run = tmp_path / "genevolve-out"
    run.mkdir()
    (run / "trace.sqlite").write_bytes((recorded_run / "trace.sqlite").read_bytes())
    before = snapshot(run)
    result = invoke("export", "--out", tmp_path / "genevolve-out.jsonl", "--format", "trl",
                    "--checkpoint", f"sqlite:///{run / 'trace.sqlite'}")
    refused(result, run, run / "trace.sqlite")
    assert snapshot(run) == before
    assert not (tmp_path / "genevolve-out.jsonl").exists()


def test_trl_export_refuses_a_dataset_dir_that_is_not_a_dataset(recorded_run, tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine", encoding="utf-8")
    result = invoke("export", "--out", tmp_path / "trl.jsonl", "--format", "trl", "--dataset-dir", keep,
                    "--checkpoint", f"sqlite:///{recorded_run / 'trace.sqlite'}")
    assert "not a saved dataset" in refused(result, keep)
    assert (keep / "notes.txt").read_text(encoding="utf-8") == "mine"


# --------------------------------------------------------------------------- import-sft


def test_import_sft_refuses_to_write_over_a_record_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    record = {"messages": [{"role": "user", "content": "a fox"}, {"role": "assistant", "content": "<answer>{}</answer>"}]}
    source = data / "part-0.jsonl"
    source.write_text(json.dumps(record) + "\n", encoding="utf-8")
    before = source.read_bytes()
    refused(invoke("import-sft", "--data", data, "--out", source), source)
    assert source.read_bytes() == before
    refused(invoke("import-sft", "--data", data, "--report", source), source)
    assert source.read_bytes() == before
    same = tmp_path / "both.jsonl"
    refused(invoke("import-sft", "--data", data, "--out", same, "--report", same), same)
    assert not same.exists()


# --------------------------------------------------------------------------- run, batch, render, merge


def test_run_refuses_an_output_that_is_its_corpus(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    corpus = out / "program.json"
    corpus.write_text(json.dumps({"title": "Foxes", "url": "https://example.org/fox", "text": "Red foxes live in snow."}) + "\n",
                      encoding="utf-8")
    before = corpus.read_bytes()
    refused(invoke("run", "a fox", "--out", out, "--corpus", corpus, "--renderer", "none", "-q"), corpus)
    assert corpus.read_bytes() == before


def test_batch_refuses_its_own_results_as_input(stage1, tmp_path):
    before = snapshot(stage1)
    refused(invoke("batch", "--input", stage1 / "results.jsonl", "--out", stage1, "--no-progress"), stage1 / "results.jsonl")
    assert snapshot(stage1) == before


def test_render_into_the_stage1_folder_is_refused(stage1):
    before = snapshot(stage1)
    result = invoke("render", "--input", stage1, "--out", stage1, "--no-progress")
    refused(result, stage1 / "results.jsonl")
    assert snapshot(stage1) == before


def test_render_through_a_symlinked_out_folder_is_refused(stage1, tmp_path):
    link = tmp_path / "renders"
    link.symlink_to(stage1, target_is_directory=True)
    before = snapshot(stage1)
    refused(invoke("render", "--input", stage1 / "results.jsonl", "--out", link, "--no-progress"), stage1 / "results.jsonl")
    assert snapshot(stage1) == before


def test_merge_refuses_an_out_folder_that_is_a_shard(stage1, tmp_path):
    link = tmp_path / "merged"
    link.symlink_to(stage1, target_is_directory=True)
    before = snapshot(stage1)
    result = invoke("merge", stage1, "--out", link)
    assert result.exit_code == 2
    assert snapshot(stage1) == before


# --------------------------------------------------------------------------- evaluate, report


def test_evaluate_refuses_results_that_are_its_own_log(tmp_path):
    log = tmp_path / "results_eval.jsonl"
    log.write_text(json.dumps({"id": "a", "prompt": "a fox", "image_path": "a.png", "gt_image": "a.png"}) + "\n", encoding="utf-8")
    before = log.read_bytes()
    result = invoke("evaluate", "--results", log, "--judge-model", "judge", "--judge-base-url", "http://127.0.0.1:9/v1", "--overwrite")
    refused(result, log)
    assert log.read_bytes() == before


def test_evaluate_wise_refuses_data_that_is_its_own_summary(tmp_path):
    out = tmp_path / "wise"
    out.mkdir()
    data = out / "wise_summary.json"
    data.write_text(json.dumps([{"prompt_id": 1, "Prompt": "a fox", "Category": "Cultural"}]), encoding="utf-8")
    before = data.read_bytes()
    result = invoke("evaluate-wise", "--data", data, "--out-dir", out, "--images", tmp_path, "--judge-model", "judge",
                    "--judge-base-url", "http://127.0.0.1:9/v1", "--overwrite")
    refused(result, data)
    assert data.read_bytes() == before


def test_report_refuses_a_summary_file_it_would_replace(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    summary = out / "report.md"  # a KScore summary saved under an unlucky name
    summary.write_text(json.dumps({"protocol": "GenEvolve-Bench KScore", "all": {"overall": 0.5}}), encoding="utf-8")
    before = summary.read_bytes()
    refused(invoke("report", summary, "--out", out), summary)
    assert summary.read_bytes() == before


def test_train_sft_refuses_to_save_over_the_base_model(tmp_path):
    model = tmp_path / "base-model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    data = tmp_path / "sft.jsonl"
    data.write_text("", encoding="utf-8")
    refused(invoke("train", "sft", "--data", data, "--model", model, "--out", model), model)
    assert (model / "config.json").read_text(encoding="utf-8") == "{}"


# --------------------------------------------------------------------------- the helper


def test_same_file_by_inode_and_by_resolved_path(tmp_path, monkeypatch):
    a = tmp_path / "a.txt"
    a.write_text("x", encoding="utf-8")
    os.link(a, tmp_path / "hard.txt")
    (tmp_path / "soft.txt").symlink_to(a)
    assert same_file(a, tmp_path / "hard.txt") and same_file(a, tmp_path / "soft.txt")
    monkeypatch.chdir(tmp_path)
    assert same_file("a.txt", a) and same_file("sub/../new.txt", tmp_path / "new.txt")
    assert not same_file(a, tmp_path / "b.txt")
    (tmp_path / "b.txt").write_text("x", encoding="utf-8")
    assert not same_file(a, tmp_path / "b.txt")  # equal bytes, another file


def test_check_outputs_and_replaced_folders(tmp_path):
    check_outputs([("--out", tmp_path / "o.jsonl"), ("--report", None)], [("--data", tmp_path / "d.jsonl"), ("--eval", "")])
    with pytest.raises(OutputOverwritesInput, match="are the same file"):
        check_outputs([("--out", tmp_path / "o"), ("--report", tmp_path / "o")], [])
    with pytest.raises(OutputOverwritesInput, match="holds the input --checkpoint"):
        check_replaced_folder("--dataset-dir", tmp_path, [("--checkpoint", tmp_path / "run" / "trace.sqlite")])
    check_replaced_folder("--dataset-dir", tmp_path / "ds", [("--checkpoint", tmp_path / "run" / "trace.sqlite")])
