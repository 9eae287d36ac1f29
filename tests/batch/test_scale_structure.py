"""What keeps a batch flat in memory and quick to resume at 10^4-10^5 rows (docs/batch.md,
"Scale"): no recorded row stays in memory, a resume reads the index and not the
trajectories, and ``results.json`` is written one record at a time.

Structural checks, not timings: ``benchmarks/scale.py`` measures the figures.
"""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from pathlib import Path
from typing import Any

import pytest

from genevolve_graph.batch import journal as journal_module
from genevolve_graph.batch.engine import StopController, run_stage
from genevolve_graph.batch.journal import INDEX_NAME, ResultJournal, summarize
from genevolve_graph.batch.rows import BatchRow

TRAJECTORY = [{"role": "user", "content": "x" * 2000}] * 10
"""About 20 kB of messages per row, like a real stage-1 record."""


class Record(dict):
    """A record that can be weakly referenced (a plain dict cannot)."""


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": i, "question": f"request {i}", "termination": "answer" if i % 3 else "error",
            "error": None if i % 3 else f"policy failed on row {i}", "messages": TRAJECTORY, **extra}


def journal_with(tmp_path: Path, count: int) -> ResultJournal:
    journal = ResultJournal(tmp_path / "results.jsonl")
    journal.load()
    for i in range(count):
        journal.append(record(i))
    return journal


def test_no_record_survives_recording(tmp_path: Path) -> None:
    journal = ResultJournal(tmp_path / "results.jsonl")
    records = journal.load()
    alive: list[weakref.ref[Record]] = []

    async def worker(row: BatchRow) -> dict[str, Any]:
        made = Record(record(row.position))
        alive.append(weakref.ref(made))
        return made

    rows = [BatchRow(key=str(i), position=i, data={"id": i, "question": f"request {i}"}) for i in range(200)]
    session = asyncio.run(run_stage(rows, worker, sink=journal.append, records=records, concurrency=16,
                                    controller=StopController(notify=lambda _: None), progress=None,
                                    is_failure=lambda r: r.get("termination") != "answer",
                                    failure=lambda row, message: {"id": row.data["id"], "termination": "error", "error": message}))
    gc.collect()
    assert session.done == 200 and session.failed == 67
    assert len(alive) == 200 and not [ref for ref in alive if ref() is not None]
    assert len(records) == 200 and records.summary("3") == {"id": 3, "termination": "error", "error": "policy failed on row 3"}
    assert records["4"]["messages"] == TRAJECTORY  # the whole record is read back from the file


def count_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Bytes of records read from the journal, and lines parsed by a scan."""
    seen = {"bytes": 0, "scanned": 0}
    read_bytes, add_scanned = ResultJournal._read_bytes, ResultJournal._add_scanned

    def counting_read(self: ResultJournal, entry: Any) -> bytes:
        data = read_bytes(self, entry)
        seen["bytes"] += len(data)
        return data

    def counting_scan(self: ResultJournal, line: bytes, *args: Any) -> None:
        seen["scanned"] += 1
        seen["bytes"] += len(line)
        add_scanned(self, line, *args)

    monkeypatch.setattr(ResultJournal, "_read_bytes", counting_read)
    monkeypatch.setattr(ResultJournal, "_add_scanned", counting_scan)
    return seen


def test_resume_reads_the_index_not_the_trajectories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal_with(tmp_path, 300)
    size = (tmp_path / "results.jsonl").stat().st_size
    seen = count_reads(monkeypatch)
    records = ResultJournal(tmp_path / "results.jsonl").load()
    assert len(records) == 300 and seen["scanned"] == 0
    assert seen["bytes"] < 0.05 * size, (seen, size)  # a sample of ids is checked, nothing more
    assert sum(1 for _, s in records.summaries() if s["termination"] == "error") == 100


def test_a_crash_between_the_two_appends_costs_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal_with(tmp_path, 50)
    index = tmp_path / INDEX_NAME
    lines = index.read_bytes().splitlines(keepends=True)
    index.write_bytes(b"".join(lines[:-1]) + lines[-1][:10])  # the last index line torn, as a crash leaves it
    seen = count_reads(monkeypatch)
    journal = ResultJournal(tmp_path / "results.jsonl")
    records = journal.load()
    assert len(records) == 50 and seen["scanned"] == 1 and not journal.index_rebuilt
    assert len(index.read_bytes().splitlines()) == 50  # the index is whole again


@pytest.mark.parametrize("damage", ["missing", "swapped", "foreign"])
def test_an_index_that_does_not_match_is_rebuilt_from_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    journal_with(tmp_path, 40)
    index = tmp_path / INDEX_NAME
    if damage == "missing":
        index.unlink()
    elif damage == "swapped":  # the same sizes, other ids: the journal was edited behind the index
        path = tmp_path / "results.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join([lines[0].replace(b'"id": 0', b'"id": 9'), *lines[1:]]))
    else:  # an index of another journal
        index.write_bytes(b'["zz", 0, 5, {}]\n')
    seen = count_reads(monkeypatch)
    journal = ResultJournal(tmp_path / "results.jsonl")
    if damage == "swapped":
        with pytest.raises(journal_module.JournalError, match="repeats id 9"):
            journal.load()  # the scan that replaces the index reports what it finds
        return
    records = journal.load()
    assert journal.index_rebuilt and seen["scanned"] == 40 and len(records) == 40
    seen["scanned"] = 0
    assert len(ResultJournal(tmp_path / "results.jsonl").load()) == 40 and seen["scanned"] == 0  # rebuilt once


def test_dropping_rows_copies_the_others_byte_for_byte(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, 9)
    before = (tmp_path / "results.jsonl").read_bytes().splitlines(keepends=True)
    assert journal.drop(["0", "3", "6", "missing"]) == 3
    assert (tmp_path / "results.jsonl").read_bytes() == b"".join(line for i, line in enumerate(before) if i % 3)
    reloaded = ResultJournal(tmp_path / "results.jsonl").load()
    assert list(reloaded) == ["1", "2", "4", "5", "7", "8"] and reloaded["8"]["question"] == "request 8"


def test_results_json_is_streamed_as_json_dumps_writes_it(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, 5)
    journal.append({"id": "odd", "text": "é \u2028 \"quoted\"\nnew line", "nested": {"a": [1, 2.5, None, True]}})
    order = ["odd", "4", "0", "2"]
    journal.write_array(tmp_path / "results.json", order)
    expected = [json.loads(json.dumps(journal.read(key))) for key in order]
    text = (tmp_path / "results.json").read_text(encoding="utf-8")
    assert text == json.dumps(expected, ensure_ascii=False, indent=2) + "\n"
    empty = ResultJournal(tmp_path / "none.jsonl")
    empty.load()
    empty.write_array(tmp_path / "empty.json", [])
    assert (tmp_path / "empty.json").read_text() == "[]\n"


def test_summaries_keep_only_short_outcome_fields() -> None:
    long_error = "e" * 1000
    summary = summarize({"id": 1, "question": "q" * 50, "messages": TRAJECTORY, "termination": "error", "error": long_error,
                         "filter_status": "kept", "render_error": None, "success": False, "rounds": 4})
    assert summary == {"id": 1, "termination": "error", "error": long_error[: journal_module.SUMMARY_TEXT],
                       "filter_status": "kept", "render_error": None, "success": False}
