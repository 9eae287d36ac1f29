"""Durable stage output: ``results.jsonl`` appended one row at a time, ``results.json`` and
``run.json`` written atomically.

Each result is one ``write`` of a whole line followed by ``fsync``, so a crash (even
SIGKILL or a power cut after the fsync) leaves every finished row on disk. The only damage
a crash can do is a torn last line (the process died inside the write); opening the
journal cuts it off, and that row simply runs again. Ids are checked on load, so a result
can never be counted twice.

Memory stays flat in the number of rows: a recorded row is kept in memory only as an
:class:`Entry` (where its line lies in the file and a summary of its short top-level
fields), and :class:`RecordedRows` reads a whole record from the file when one is asked
for. Beside the journal, ``.results.index.jsonl`` lists the entries, so a resumed run
learns what is done without reading the trajectories again: the index is checked against
the journal (sizes, a sample of ids), lines the index does not cover yet (a crash between
the two appends) are read from the journal, and a missing or inconsistent index is rebuilt
by one scan of the journal.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genevolve_graph.batch.rows import row_key
from genevolve_graph.util.file_modes import FILE_MODE, mkstemp, write_bytes_atomic
from genevolve_graph.util.jsonl import dumps_safe

try:  # the index is read once per resume: 100,000 lines take about 0.5 s with json, 0.1 s with orjson
    from orjson import loads as _loads_index  # installed with langsmith (a langchain-core dependency)
except ImportError:  # pragma: no cover - depends on the install
    _loads_index = json.loads


class JournalError(RuntimeError):
    """A results file that was edited or damaged in a way that cannot be repaired safely."""


def dumps_line(record: dict[str, Any]) -> bytes:
    return (dumps_safe(record, default=str) + "\n").encode("utf-8")


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, payload: Any, *, indent: int | None = 2) -> None:
    """``payload`` as JSON, written atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, dumps_safe(payload, indent=indent, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder, fsync, rename: readers see the old
    file or the new one, never half of one."""
    write_bytes_atomic(path, text.encode("utf-8"), fsync=True)
    fsync_dir(path.parent)


INDEX_NAME = ".results.index.jsonl"
SUMMARY_TEXT = 240
"""Longest string a summary keeps whole; longer ones are cut (summaries feed counts and the
top errors of a report, which show 160 characters)."""
SAMPLE_CHECKS = 8
"""Index entries checked against the journal's bytes on load, beside the first and the last."""


SUMMARY_FIELDS = ("id", "termination", "success")
"""Fields every summary keeps, beside those named ``*_status`` and ``*error``."""


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """What outcome counts, failure tests and retry rules read of a record: ``id``,
    ``termination``, ``success`` and the ``*_status`` / ``*error`` fields (strings cut to
    ``SUMMARY_TEXT``). A stage's ``is_failure``, ``outcome_field`` and ``error_field`` name
    only such fields, so they give the same answer on a summary as on the whole record;
    everything else stays on disk."""
    summary: dict[str, Any] = {}
    for name, value in record.items():
        if name in SUMMARY_FIELDS or name.endswith(("_status", "error")):
            if isinstance(value, str) and len(value) > SUMMARY_TEXT:
                value = value[:SUMMARY_TEXT]
            elif not (value is None or isinstance(value, str | bool | int | float)):
                value = str(value)[:SUMMARY_TEXT]
            summary[name] = value
    return summary


@dataclass(frozen=True, slots=True)
class Entry:
    """Where one recorded row lies in ``results.jsonl``, and its summary."""

    offset: int
    length: int
    summary: dict[str, Any]


class ResultJournal:
    """``results.jsonl`` of one stage: load (repairing a torn tail), append, rewrite.

    ``entries`` maps each recorded row's key to its :class:`Entry`, in file order; the
    records themselves stay in the file (:meth:`read`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.index_path = self.path.with_name(INDEX_NAME)
        self._lock = threading.Lock()
        self.entries: dict[str, Entry] = {}
        self.repaired_bytes = 0
        """Bytes of a torn last line cut off by ``load``."""
        self.index_rebuilt = False
        """Whether the last ``load`` had to scan the whole journal (no usable index)."""

    # ----------------------------------------------------------------- loading

    def load(self) -> "RecordedRows":
        """The recorded rows by key, in file order. Cuts off a torn last line."""
        self.entries = {}
        self.index_rebuilt = False
        if not self.path.exists():
            self.index_path.unlink(missing_ok=True)
            return RecordedRows(self)
        size = self._cut_torn_tail()
        entries, covered = self._read_index(size)
        if entries is None:
            self.index_rebuilt = True
            entries, covered = {}, 0
        self.entries = entries
        tail = self._scan(covered, size)
        if self.index_rebuilt or tail:
            self._write_index()
        return RecordedRows(self)

    def _cut_torn_tail(self) -> int:
        size = self.path.stat().st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as stream:
            stream.seek(size - 1)
            if stream.read(1) == b"\n":
                return size
            # find the last newline, reading backwards in blocks
            end = size
            while end > 0:
                start = max(0, end - 65536)
                stream.seek(start)
                block = stream.read(end - start)
                found = block.rfind(b"\n")
                if found >= 0:
                    keep = start + found + 1
                    break
                end = start
            else:
                keep = 0
        self.repaired_bytes = size - keep
        with open(self.path, "r+b") as stream:
            stream.truncate(keep)
            stream.flush()
            os.fsync(stream.fileno())
        return keep

    def _read_index(self, size: int) -> tuple[dict[str, Entry] | None, int]:
        """The index's entries and the journal bytes they cover, or ``(None, 0)`` when the
        index is missing or does not match the journal."""
        try:
            data = self.index_path.read_bytes()
        except OSError:
            return None, 0
        entries: dict[str, Entry] = {}
        covered = 0
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                key, offset, length, summary = _loads_index(line)
            except (ValueError, TypeError):
                break  # a torn last index line: the journal lines after it are scanned
            if offset != covered or key in entries or offset + length > size:
                return None, 0
            entries[key] = Entry(offset, length, summary)
            covered = offset + length
        if not self._sample_matches(entries):
            return None, 0
        return entries, covered

    def _sample_matches(self, entries: dict[str, Entry]) -> bool:
        if not entries:
            return True
        keys = list(entries)
        step = max(1, len(keys) // SAMPLE_CHECKS)
        for key in {keys[0], keys[-1], *keys[::step]}:
            try:
                record = json.loads(self._read_bytes(entries[key]))
            except (OSError, ValueError):
                return False
            if not isinstance(record, dict) or row_key(record.get("id")) != key:
                return False
        return True

    def _scan(self, start: int, size: int) -> int:
        """Parse the journal's lines from byte ``start`` (all of it without an index) and add
        their entries; returns how many lines were read."""
        if start >= size:
            return 0
        count = 0
        with open(self.path, "rb") as stream:
            stream.seek(start)
            offset = start
            number = self._line_number(start)
            for line in stream:
                number += 1
                length = len(line)
                if line.strip():
                    self._add_scanned(line, number, offset, length)
                    count += 1
                offset += length
        return count

    def _line_number(self, start: int) -> int:
        return 0 if start == 0 else len(self.entries)

    def _add_scanned(self, line: bytes, number: int, offset: int, length: int) -> None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JournalError(
                f"{self.path} line {number} is not JSON ({exc.msg}); the file was edited or damaged: "
                "fix or delete that line, then run again (its row will run again)"
            ) from None
        if not isinstance(record, dict) or "id" not in record:
            raise JournalError(f"{self.path} line {number} is not a result row (no 'id'); fix or delete that line")
        key = row_key(record["id"])
        if key in self.entries:
            raise JournalError(
                f"{self.path} line {number} repeats id {record['id']!r}; the file was edited or concatenated: "
                "keep one line per id"
            )
        self.entries[key] = Entry(offset, length, summarize(record))

    def _write_index(self) -> None:
        write_bytes_atomic(self.index_path, b"".join(_index_line(key, entry) for key, entry in self.entries.items()))

    # ----------------------------------------------------------------- reading

    def _read_bytes(self, entry: Entry) -> bytes:
        with open(self.path, "rb") as stream:
            stream.seek(entry.offset)
            return stream.read(entry.length)

    def read(self, key: str) -> dict[str, Any]:
        """The whole recorded result of ``key``, read from the file."""
        return json.loads(self._read_bytes(self.entries[key]))

    # ----------------------------------------------------------------- writing

    def append(self, record: dict[str, Any]) -> None:
        """Append one result durably (thread-safe: one whole line per write, then fsync),
        then its entry to the index (no fsync: a lost index line is found again by ``load``)."""
        line = dumps_line(record)
        key = row_key(record["id"])
        summary = summarize(record)
        with self._lock:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            try:
                offset = os.fstat(fd).st_size
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)
            entry = self.entries[key] = Entry(offset, len(line), summary)
            with open(self.index_path, "ab") as index:
                index.write(_index_line(key, entry))

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the journal atomically with ``records`` (merging shards)."""
        self._replace(dumps_line(record) for record in records)

    def drop(self, keys: Iterable[str]) -> int:
        """Forget the rows ``keys`` (to run them again): the journal is rewritten atomically
        without their lines, the others copied byte for byte."""
        gone = set(keys) & set(self.entries)
        if gone:
            kept = [entry for key, entry in self.entries.items() if key not in gone]
            self._replace(self._read_bytes(entry) for entry in kept)
        return len(gone)

    def _replace(self, lines: Iterable[bytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        entries: dict[str, Entry] = {}
        try:
            with os.fdopen(handle, "wb") as stream:
                offset = 0
                for line in lines:
                    record = json.loads(line)
                    entries[row_key(record["id"])] = Entry(offset, len(line), summarize(record))
                    stream.write(line)
                    offset += len(line)
                stream.flush()
                os.fsync(stream.fileno())
            with self._lock:
                self.index_path.unlink(missing_ok=True)  # a crash from here on rebuilds it from the journal
                os.replace(tmp, self.path)
                self.entries = entries
                self._write_index()
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)

    def write_array(self, target: Path, keys: Iterable[str]) -> None:
        """``target`` as one JSON array of the records ``keys`` (as ``json.dumps(list,
        indent=2)`` would write it), streamed record by record and replaced atomically."""
        handle, tmp = mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream, contextlib.ExitStack() as stack:
                source = stack.enter_context(open(self.path, "rb")) if self.entries else None
                first = True
                stream.write(b"[")
                for key in keys:
                    entry = self.entries[key]
                    assert source is not None  # keys come from the entries
                    source.seek(entry.offset)
                    text = dumps_safe(json.loads(source.read(entry.length)), indent=2, default=str)
                    stream.write((b"\n" if first else b",\n") + ("  " + text.replace("\n", "\n  ")).encode("utf-8"))
                    first = False
                stream.write(b"]\n" if first else b"\n]\n")
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(target.parent)


def _index_line(key: str, entry: Entry) -> bytes:
    return (dumps_safe([key, entry.offset, entry.length, entry.summary]) + "\n").encode("utf-8")


class RecordedRows(MutableMapping[str, dict[str, Any]]):
    """The recorded rows of a journal, by key: whole records are read from the file when
    asked for; :meth:`summary` answers from memory.

    Setting ``rows[key] = record`` after ``journal.append(record)`` (what the executors do)
    keeps nothing of the record; deleting a key forgets it until :meth:`ResultJournal.drop`
    or ``rewrite`` makes that durable."""

    def __init__(self, journal: ResultJournal) -> None:
        self.journal = journal

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.journal.read(key)

    def __setitem__(self, key: str, record: dict[str, Any]) -> None:
        if key not in self.journal.entries:
            raise KeyError(f"row {key!r} is set before its record was appended to {self.journal.path}")

    def __delitem__(self, key: str) -> None:
        del self.journal.entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self.journal.entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.journal.entries))

    def __len__(self) -> int:
        return len(self.journal.entries)

    def summary(self, key: str) -> dict[str, Any]:
        """The short top-level fields of ``key``'s record (:func:`summarize`)."""
        return self.journal.entries[key].summary

    def summaries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return ((key, entry.summary) for key, entry in list(self.journal.entries.items()))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
