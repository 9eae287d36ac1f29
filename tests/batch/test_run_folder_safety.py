"""Run-folder safety (issue 12 items 7-9): moved/copied folders resume into their own
database, one unencodable row fails alone, and a different input is refused on resume."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from .conftest import policy_args, read_results, request_text, script_for, write_jsonl

SURROGATE = "a cat \ud800"


def threads_in(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {t for (t,) in conn.execute("select distinct thread_id from checkpoints")}


def test_a_copied_run_folder_resumes_into_its_own_database(cli, tmp_path, scripted_server):
    ids = ["ok", "poison"]
    server = scripted_server(script_for(ids, rounds=2), fail_when="poison")
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i)} for i in ids])
    first = tmp_path / "first"
    result = cli("batch", "--input", path, "--out", first, "--max-retries", "0", *policy_args(server))
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((first / "run.json").read_text())
    assert str(first) not in json.dumps(manifest["checkpoint"])  # relative to the run folder
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    before = threads_in(first / "trace.sqlite")
    again = cli("batch", "--input", path, "--out", copy, "--retry-failed", "--max-retries", "0", *policy_args(server))
    assert again.exit_code == 0, again.stderr
    assert threads_in(first / "trace.sqlite") == before  # the original folder is untouched
    assert any(t.endswith(":poison#2") for t in threads_in(copy / "trace.sqlite"))
    # a moved folder (the original gone) resumes too, and nothing is created at the old place
    moved = tmp_path / "moved"
    copy.rename(moved)
    shutil.rmtree(first)
    third = cli("batch", "--input", path, "--out", moved, "--retry-failed", "--max-retries", "0", *policy_args(server))
    assert third.exit_code == 0, third.stderr
    assert not first.exists() and any(t.endswith(":poison#3") for t in threads_in(moved / "trace.sqlite"))


def test_a_row_with_a_lone_surrogate_fails_alone_and_resume_works(cli, tmp_path, scripted_server):
    rows = [{"id": "a", "question": request_text("a")}, {"id": "bad", "question": SURROGATE}, {"id": "b", "question": request_text("b")}]
    server = scripted_server(script_for(["a", "b"], rounds=2))
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # ASCII escapes: valid JSON
    out = tmp_path / "run"
    result = cli("batch", "--input", path, "--out", out, *policy_args(server))
    assert result.exit_code == 0, result.stderr
    records = {r["id"]: r for r in read_results(out / "results.jsonl")}
    assert set(records) == {"a", "bad", "b"}
    assert records["a"]["termination"] == records["b"]["termination"] == "answer"
    assert records["bad"]["termination"] == "error" and "surrogate" in records["bad"]["error"]
    assert "'question'" in records["bad"]["error"]
    assert len(json.loads((out / "results.json").read_text())) == 3
    again = cli("batch", "--input", path, "--out", out, *policy_args(server))
    assert again.exit_code == 0, again.stderr
    assert "3/3 rows recorded" in again.stdout


def test_render_records_an_unencodable_row_as_failed(cli, tmp_path):
    rows = [{"id": "fine", "question": "a red kite", "gen_prompt": "A red kite over a beach.", "reference_images": [], "termination": "answer"},
            {"id": "bad", "question": "a kite", "gen_prompt": SURROGATE, "reference_images": [], "termination": "answer"}]
    source = tmp_path / "results.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "renders"
    result = cli("render", "--input", source, "--out", out, "--renderer", "preview", "--no-progress")
    assert result.exit_code == 0, result.stderr
    records = {r["id"]: r for r in read_results(out / "results.jsonl")}
    assert records["fine"]["success"] is True
    assert records["bad"]["success"] is False and "surrogate" in records["bad"]["render_error"]


def test_resuming_with_another_input_is_refused_unless_forced(cli, tmp_path, scripted_server):
    ids = ["x", "y", "z"]
    server = scripted_server(script_for(ids, rounds=2))
    first_input = write_jsonl(tmp_path / "one.jsonl", [{"id": i, "question": request_text(i)} for i in ids[:2]])
    other_input = write_jsonl(tmp_path / "two.jsonl", [{"id": i, "question": request_text(i)} for i in ids])
    out = tmp_path / "run"
    assert cli("batch", "--input", first_input, "--out", out, *policy_args(server)).exit_code == 0
    manifest_before = (out / "run.json").read_text()
    refused = cli("batch", "--input", other_input, "--out", out, *policy_args(server))
    assert refused.exit_code == 2 and "--force-input" in refused.stderr and "one.jsonl" in refused.stderr
    assert (out / "run.json").read_text() == manifest_before  # nothing rewritten
    forced = cli("batch", "--input", other_input, "--out", out, "--force-input", *policy_args(server))
    assert forced.exit_code == 0, forced.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert [Path(entry["input"]).name for entry in manifest["inputs"]] == ["one.jsonl", "two.jsonl"]
    assert all(len(entry["input_sha256"]) == 64 for entry in manifest["inputs"])
    assert sorted(r["id"] for r in read_results(out / "results.jsonl")) == ids
