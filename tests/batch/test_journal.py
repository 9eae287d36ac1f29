"""results.jsonl: one durable line per row, torn tails cut off, damage reported."""

from __future__ import annotations

import json
import os

import pytest

from genevolve_graph.batch.journal import JournalError, ResultJournal, write_json_atomic


def test_append_writes_whole_lines_and_fsyncs(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    journal = ResultJournal(tmp_path / "results.jsonl")
    for i in range(3):
        journal.append({"id": i, "text": "é" * i})
    assert len(synced) >= 3
    data = (tmp_path / "results.jsonl").read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 3
    assert list(ResultJournal(tmp_path / "results.jsonl").load()) == ["0", "1", "2"]


def test_torn_last_line_is_cut_off_and_reported(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"id": "a", "x": 1}\n{"id": "b", "x": 2}\n{"id": "c", "x"')
    journal = ResultJournal(path)
    records = journal.load()
    assert list(records) == ["a", "b"] and journal.repaired_bytes == len(b'{"id": "c", "x"')
    assert path.read_bytes() == b'{"id": "a", "x": 1}\n{"id": "b", "x": 2}\n'
    journal.append({"id": "c", "x": 3})
    assert list(ResultJournal(path).load()) == ["a", "b", "c"]


def test_complete_line_missing_only_its_newline_is_also_dropped(tmp_path):
    """A write killed just before its newline: the row runs again rather than risk a merge of two lines."""
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}')
    journal = ResultJournal(path)
    assert list(journal.load()) == ["a"] and journal.repaired_bytes == len(b'{"id": "b"}')


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"id": "a"}\nnot json\n{"id": "b"}\n', "line 2 is not JSON"),
        (b'{"id": "a"}\n{"id": "a"}\n', "line 2 repeats id 'a'"),
        (b'{"no_id": 1}\n', "line 1 is not a result row"),
    ],
)
def test_damage_in_the_middle_is_an_error_not_a_silent_repair(tmp_path, content, message):
    path = tmp_path / "results.jsonl"
    path.write_bytes(content)
    with pytest.raises(JournalError, match=message):
        ResultJournal(path).load()
    assert path.read_bytes() == content  # nothing is changed behind the user's back


def test_rewrite_and_atomic_json_leave_no_temporary_files(tmp_path):
    journal = ResultJournal(tmp_path / "results.jsonl")
    journal.append({"id": 1})
    journal.rewrite([{"id": 2}, {"id": 3}])
    assert list(journal.load()) == ["2", "3"]
    write_json_atomic(tmp_path / "results.json", [{"id": 2}])
    assert json.loads((tmp_path / "results.json").read_text()) == [{"id": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".results.index.jsonl", "results.json", "results.jsonl"]
