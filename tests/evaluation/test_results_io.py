"""Reading results and the durable per-sample log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genevolve_graph.evaluation.results_io import EvalInputError, EvalLog, load_rows, resolve_path, sample_ids


def test_load_rows_jsonl_and_array(tmp_path: Path) -> None:
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"id": 1}\n\n{"id": 2}\n', encoding="utf-8")
    array = tmp_path / "r.json"
    array.write_text(json.dumps([{"id": 1}, {"id": 2}, {"summary_type": "overall_avg"}]), encoding="utf-8")
    assert load_rows(jsonl) == load_rows(array) == [{"id": 1}, {"id": 2}]
    assert sample_ids([{"id": 7}, {"prompt": "no id"}], jsonl) == ["7", "1"]
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(EvalInputError, match="item 1 is not a JSON object"):
        load_rows(tmp_path / "list.json")


def test_resolve_path_tries_roots_in_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"x")
    found, why = resolve_path("x.png", [tmp_path / "a", tmp_path / "b"])
    assert found == (tmp_path / "b" / "x.png").resolve() and why == ""
    missing, why = resolve_path("y.png", [tmp_path / "a"])
    assert missing is None and why.startswith("y.png not found (tried ")
    assert resolve_path(None, [tmp_path]) == (None, "no path given")


def test_log_appends_survive_a_torn_last_line_and_later_lines_win(tmp_path: Path) -> None:
    log = EvalLog(tmp_path / "log.jsonl")
    log.reset()
    log.append({"id": "a", "status": "failed"})
    log.append({"id": "b", "status": "scored"})
    log.append({"id": "a", "status": "scored"})
    with log.path.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "c", "stat')  # the process died mid-write
    records = log.load()
    assert {k: v["status"] for k, v in records.items()} == {"a": "scored", "b": "scored"}
    log.compact([records["b"], records["a"]])
    assert [json.loads(line)["id"] for line in log.path.read_text().splitlines()] == ["b", "a"]


def test_log_with_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n', encoding="utf-8")
    with pytest.raises(EvalInputError, match="line 2 is not valid JSON"):
        EvalLog(path).load()
