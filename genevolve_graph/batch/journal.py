"""Durable stage output: ``results.jsonl`` appended one row at a time, ``results.json`` and
``run.json`` written atomically.

Each result is one ``write`` of a whole line followed by ``fsync``, so a crash (even
SIGKILL or a power cut after the fsync) leaves every finished row on disk. The only damage
a crash can do is a torn last line (the process died inside the write); opening the
journal cuts it off, and that row simply runs again. Ids are checked on load, so a result
can never be counted twice.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable

from genevolve_graph.batch.rows import row_key
from genevolve_graph.util.file_modes import FILE_MODE, mkstemp, write_bytes_atomic
from genevolve_graph.util.jsonl import dumps_safe


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


class ResultJournal:
    """``results.jsonl`` of one stage: load (repairing a torn tail), append, rewrite."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.repaired_bytes = 0
        """Bytes of a torn last line cut off by ``load``."""

    def load(self) -> dict[str, dict[str, Any]]:
        """The recorded results by row key, in file order. Cuts off a torn last line."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            self.repaired_bytes = len(data) - keep
            with open(self.path, "r+b") as stream:
                stream.truncate(keep)
                stream.flush()
                os.fsync(stream.fileno())
            data = data[:keep]
        records: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
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
            if key in records:
                raise JournalError(
                    f"{self.path} line {number} repeats id {record['id']!r}; the file was edited or concatenated: "
                    "keep one line per id"
                )
            records[key] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Append one result durably (thread-safe: one whole line per write, then fsync)."""
        line = dumps_line(record)
        with self._lock:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            try:
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the journal atomically (used to drop rows that will be retried)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                for record in records:
                    stream.write(dumps_line(record))
                stream.flush()
                os.fsync(stream.fileno())
            with self._lock:
                os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
