"""The one place the data pipeline touches the batch package.

Every data stage runs on the batch stage engine: a run folder with ``results.jsonl``
appended and fsynced per item (exactly once after SIGKILL, torn tail cut off), ``run.json``,
a folder lock, the progress bar, clean stops on SIGINT/SIGTERM. The requests, filter and
visual-filter stages are ``ItemStage`` row functions run by ``run_session`` with the
``LocalExecutor``; the teacher and the renders are the batch stages themselves
(``arun_rollouts``, ``arun_renders``). Nothing else in ``genevolve_graph.data`` imports
``genevolve_graph.batch``, so a change of the engine's interface is met here alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, overload

from genevolve_graph.batch.engine import RESULTS_JSONL, StopController, open_run_folder, run_session
from genevolve_graph.batch.local import LocalExecutor
from genevolve_graph.batch.journal import JournalError, ResultJournal, fsync_dir, read_json, write_json_atomic
from genevolve_graph.batch.renders import RenderOptions, arun_renders, program_of
from genevolve_graph.batch.rollouts import RolloutOptions, arun_rollouts
from genevolve_graph.batch.rows import BatchRow, InputError, iter_rows_from_values, read_rows, row_key
from genevolve_graph.util.file_modes import write_chunks_atomic
from genevolve_graph.util.paths import file_stem

Item = BatchRow
"""One unit of work: ``key`` (the id as text), ``position``, ``data`` (the record so far)."""

__all__ = [
    "InputError", "Item", "ItemStage", "JournalError", "StageRecords", "StageRun", "StoredItem", "recorded_checkpoint", "StopController",
    "file_stem", "make_item", "move_item", "program_of", "read_items", "read_json", "render_items", "row_key", "run_items", "teacher_rollouts",
    "write_json_atomic", "write_lines_atomic",
]


@dataclass
class StageRun:
    """What one session of a data stage did, whichever machinery ran it."""

    stage: str
    folder: Path
    records: Sequence[dict[str, Any]]
    """Every recorded item of the stage (earlier sessions included), in input order: a
    :class:`StageRecords` that reads each record from ``results.jsonl`` when it is asked
    for, so a stage of 10^5 items does not hold its records (``len`` costs nothing)."""
    total: int
    done_now: int
    seconds: float
    interrupted: signal.Signals | None
    fatal: BaseException | None
    summary: list[str]

    @property
    def remaining(self) -> int:
        return self.total - len(self.records)

    @property
    def complete(self) -> bool:
        return self.fatal is None and self.remaining == 0

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return 1
        if self.interrupted is not None:
            return {signal.SIGINT: 130, signal.SIGTERM: 143}.get(self.interrupted, 1)
        return 0


def make_item(key: str, position: int, data: dict[str, Any]) -> Item:
    return BatchRow(key=row_key(key), position=position, data={"id": key, **data})


class StoredItem(BatchRow):
    """An item whose fields stay in the file it was read from (the previous stage's JSONL):
    ``data`` reads and parses its line again at each use (the engine's check, the worker),
    so a stage of 10^5 items holds keys and file offsets, not 10^5 records."""

    def __init__(self, key: str, position: int, source: Path, offset: int, length: int, *, id_first: bool = False) -> None:
        # BatchRow is a frozen dataclass: its fields are set as its own __init__ sets them
        for name, value in (("key", key), ("position", position), ("source", source), ("offset", offset),
                            ("length", length), ("id_first", id_first)):
            object.__setattr__(self, name, value)

    @property
    def data(self) -> dict[str, Any]:  # type: ignore[override]
        with open(self.source, "rb") as stream:
            stream.seek(self.offset)
            line = stream.read(self.length)
        try:
            data = json.loads(line.decode("utf-8").lstrip("\ufeff"))
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise InputError(f"{self.source} changed while this stage read it (item {self.key!r}); run the command again")
        if "id" not in data:  # a row without an id is known by its position in the file, as read_rows does
            data = {"id": int(self.key), **data}
        if row_key(data["id"]) != self.key:
            raise InputError(f"{self.source} changed while this stage read it (item {self.key!r}); run the command again")
        return {"id": self.key, **data} if self.id_first else data

    def moved(self, position: int) -> StoredItem:
        """The same item at another position of a new stage's input (what ``make_item`` makes
        of a row: its id first), its fields still in the file."""
        return StoredItem(self.key, position, self.source, self.offset, self.length, id_first=True)


def move_item(row: Item, position: int) -> Item:
    """``row`` at ``position`` of a new stage's input, as ``make_item`` makes it (its id
    first); a :class:`StoredItem` stays in its file."""
    if isinstance(row, StoredItem):
        return row.moved(position)
    return make_item(row.key, position, row.data)


def read_items(path: Path, *, option: str, keep: Callable[[dict[str, Any]], bool] | None = None) -> list[Item]:
    """The rows of a finished stage's JSONL (checked like batch input), or only those whose
    fields ``keep`` accepts; none when the stage ran with nothing to do (its folder has
    ``run.json`` but no results).

    The file is read one line at a time and each row is kept as a :class:`StoredItem` (its
    key and where its line lies), so memory does not grow with the records' size."""
    path = Path(path)
    if not path.exists() and (path.parent / "run.json").exists():
        return []
    first = _first_text(path)
    if first is None:
        return []
    if first == "[" or first == "":  # a JSON array (or a file that cannot be read): checked as batch input
        rows = read_rows(path, option=option)
        return [row for row in rows if keep is None or keep(row.data)]
    problems: list[str] = []
    where: list[tuple[int, int]] = []
    items: list[Item] = []
    # the lines are read lazily: when a row comes out of the check, its line is the last one read
    for row in iter_rows_from_values(_values(path, option, problems, where), path, problems):
        if keep is None or keep(row.data):
            offset, length = where[-1]
            items.append(StoredItem(row.key, row.position, path, offset, length))
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''} in the file)" if len(problems) > 1 else ""
        raise InputError(problems[0] + more)
    return items


def _first_text(path: Path) -> str | None:
    """The first character of ``path`` that is not blank (``None``: only blanks; ``""``: a
    file that cannot be read, left to ``read_rows`` to name)."""
    try:
        with open(path, encoding="utf-8-sig") as stream:
            while True:
                block = stream.read(65536)
                if not block:
                    return None
                text = block.lstrip()
                if text:
                    return text[0]
    except (OSError, UnicodeDecodeError):
        return ""


def _values(path: Path, option: str, problems: list[str], where: list[tuple[int, int]]) -> Iterator[tuple[int | None, int | None, Any]]:
    """``(line, None, value)`` per JSON line, as ``read_rows`` parses them; the offset and
    length of the line just read is ``where[-1]`` (only the last one is kept)."""
    offset = 0
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            start, size = offset, len(raw)
            offset += size
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                start, raw = start + 3, raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path} is not UTF-8 text (byte {start + exc.start}); pass a JSONL or JSON file as {option}") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path} line {number}: not JSON ({exc.msg} at column {exc.colno}); each line must hold one JSON object")
                continue
            where[:] = [(start, len(raw))]
            yield number, None, value


class StageRecords(Sequence[dict[str, Any]]):
    """A stage's recorded items in input order, read from its journal when asked for (one
    record in memory at a time when iterated)."""

    def __init__(self, journal: ResultJournal, keys: list[str]) -> None:
        self.journal = journal
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self.journal.read(key) for key in self.keys[index]]
        return self.journal.read(self.keys[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.keys:
            return
        with open(self.journal.path, "rb") as stream:
            for key in self.keys:
                entry = self.journal.entries[key]
                stream.seek(entry.offset)
                yield json.loads(stream.read(entry.length))


def _from_report(report: Any) -> StageRun:
    recorded = report.folder.records
    return StageRun(
        stage=report.stage, folder=report.folder.path,
        records=StageRecords(report.folder.journal, [row.key for row in report.rows if row.key in recorded]),
        total=len(report.rows), done_now=report.session.done, seconds=report.session.seconds, interrupted=report.interrupted,
        fatal=report.fatal, summary=report.summary_lines(),
    )


def write_lines_atomic(path: Path, lines: Iterable[str]) -> None:
    """A text file written line by line through a temporary file, fsynced, then renamed
    (``write_text_atomic`` without the whole text in memory)."""
    write_chunks_atomic(path, (line.encode("utf-8") for line in lines), fsync=True)
    fsync_dir(path.parent)


@dataclass
class ItemStage:
    """A data stage as the batch engine's ``Stage``: the row function is ``worker``, and an
    unexpected error in one item becomes that item's infrastructure failure (one bad item
    fails alone)."""

    name: str
    worker: Callable[[Item], Awaitable[dict[str, Any]]]
    outcome_field: str
    error_field: str
    failed: Callable[[dict[str, Any]], bool]

    def is_failure(self, record: dict[str, Any]) -> bool:
        return self.failed(record)

    def failure(self, row: Item, message: str) -> dict[str, Any]:
        return {**row.data, self.outcome_field: "infra_error", self.outcome_field.replace("_status", "_reason"): "internal_error",
                self.error_field: message[:500]}

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Callable[[Item], Awaitable[dict[str, Any]]]]:
        async def guarded(item: Item) -> dict[str, Any]:
            try:
                return await self.worker(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded as the item's outcome
                return self.failure(item, f"internal error: {type(exc).__name__}: {str(exc)[:300]}")

        yield guarded

    def report_lines(self, folder: Any) -> list[str]:
        return []


async def run_items(
    stage: str,
    items: list[Item],
    worker: Callable[[Item], Awaitable[dict[str, Any]]],
    *,
    out_dir: Path,
    settings: dict[str, Any],
    concurrency: int,
    resume: bool | None,
    progress: bool,
    is_failure: Callable[[dict[str, Any]], bool],
    outcome_field: str,
    error_field: str,
    input_path: str = "",
    input_digest: str = "",
    controller: StopController | None = None,
    retry_infra: bool = False,
) -> StageRun:
    """Run ``worker`` (which records its own failures) over the items not yet recorded in
    ``out_dir/results.jsonl``, appending each record as it finishes."""
    folder = open_run_folder(out_dir, stage=stage, rows=items, resume=resume, input_path=input_path,
                             input_digest=input_digest, shard=None, settings=settings)
    try:
        if retry_infra:
            _drop_for_retry(folder, lambda r: r.get(outcome_field) == "infra_error")
        folder.save_manifest()
        item_stage = ItemStage(stage, worker, outcome_field, error_field, is_failure)
        report = await run_session(item_stage, items, folder, LocalExecutor(concurrency), progress=progress, controller=controller)
        return _from_report(report)
    finally:
        folder.release()


def _drop_for_retry(folder: Any, failed: Callable[[dict[str, Any]], bool]) -> int:
    """Forget the recorded infrastructure failures so they run again (the journal is
    rewritten atomically first; each id still appears once)."""
    retry = [key for key, summary in folder.records.summaries() if failed(summary)]
    if retry:
        folder.journal.drop(retry)
        folder.notes.append(f"retrying {len(retry)} item(s) recorded as infrastructure failures")
    return len(retry)


async def teacher_rollouts(
    rows: list[Item],
    ctx: Any,
    *,
    out_dir: Path,
    checkpoint: str | None,
    concurrency: int,
    resume: bool | None,
    progress: bool,
    input_path: str,
    input_digest: str,
    settings: dict[str, Any],
    services: dict[str, Any] | None = None,
    retry_infra: bool = False,
    server: str = "",
    executor: Any = None,
) -> tuple[StageRun, str]:
    """The teacher's trajectories through the batch rollout stage (each row one checkpointer
    thread); returns the run and the checkpoint URL the threads are in. With ``server`` (and
    its ``executor``, as ``batch --server`` builds it) every row is a background run on that
    LangGraph Server and the server's threads are the trace, recorded as such in ``run.json``."""
    from genevolve_graph.batch.rollouts import prepare_rollouts

    options = RolloutOptions(out_dir=out_dir, checkpoint=server or checkpoint, concurrency=concurrency, resume=resume,
                             input_path=input_path, input_digest=input_digest, progress=progress,
                             extra_settings={**settings, "server": server} if server else settings, retry_failed=retry_infra)
    folder, url = prepare_rollouts(rows, ctx, options)
    report = await arun_rollouts(rows, ctx, options, folder=folder, checkpoint_url=url, services=services, executor=executor)
    return _from_report(report), url


async def render_items(
    rows: list[Item],
    ctx: Any,
    *,
    out_dir: Path,
    concurrency: int,
    resume: bool | None,
    progress: bool,
    input_path: str,
    settings: dict[str, Any],
    renderer: Any = None,
    retry_infra: bool = False,
    server: str = "",
    executor: Any = None,
    server_output_dir: str = "",
) -> StageRun:
    """Render the rows' programs through the batch render stage (``images/<id>.png``);
    a row without a program is recorded as failed, never rendered from its request. With
    ``server`` (and its ``executor``) the rows render there, as ``render --server`` does."""
    from genevolve_graph.batch.renders import prepare_renders

    if server:
        settings = {**settings, "server": server, "server_output_dir": server_output_dir}
    options = RenderOptions(out_dir=out_dir, concurrency=concurrency, resume=resume, fallback="skip",
                            input_path=input_path, progress=progress, extra_settings=settings, server_url=server,
                            server_output_dir=server_output_dir)
    folder = prepare_renders(rows, ctx, options)
    if retry_infra:
        try:
            _drop_for_retry(folder, lambda r: not r.get("success"))
        except BaseException:
            folder.release()
            raise
    report = await arun_renders(rows, ctx, options, folder=folder, renderer=renderer, executor=executor)
    return _from_report(report)


def recorded_checkpoint(folder: Path) -> str | None:
    """The checkpointer a rollout run folder recorded, as an absolute URL (``run.json`` keeps
    a SQLite file inside the folder relative to it)."""
    manifest = Path(folder) / "run.json"
    if not manifest.exists():
        return None
    url = read_json(manifest).get("checkpoint")
    if not url:
        return None
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_absolute():
        return f"sqlite:///{(Path(folder).resolve() / url[len('sqlite:///'):])}"
    return url


def results_path(folder: Path) -> Path:
    return Path(folder) / RESULTS_JSONL
