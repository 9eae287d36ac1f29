"""The stage engine: it owns the loop, the run folder, the journal, progress and signals.

A *stage* (``Stage``: rollouts, renders) is a plain row function, ``worker(row) -> record``,
opened with the resources its rows share (a checkpointer and compiled graph, a renderer),
plus how to record a row that could not run. An *executor* (``batch.executors``) decides
where row functions run: on this event loop, in worker processes, or as runs on a
LangGraph Server. ``run_session`` puts them together for one session of a run folder.

``run_stage`` starts at most ``concurrency`` workers at a time (an ``asyncio.Semaphore``;
tasks are created only when a slot is free, so memory does not grow with the input),
appends each record to ``results.jsonl`` as soon as it is ready, and updates the progress
bar.

Stopping: the first SIGINT or SIGTERM stops scheduling and gives the rows in flight
``grace`` seconds to finish; after that (or at a second signal) they are cancelled. A
cancelled rollout continues from its last checkpoint on resume; nothing half-done is
ever recorded.
"""

from __future__ import annotations

import contextlib

import asyncio
import collections
import datetime as _dt
import os
import signal
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncContextManager, Awaitable, Callable, Iterable, Iterator, Protocol

from genevolve_graph.batch.journal import RecordedRows, ResultJournal, read_json, write_json_atomic
from genevolve_graph.batch.progress import StageProgress, format_duration
from genevolve_graph.batch.rows import BatchRow, InputError, row_key
from genevolve_graph.util.jsonl import unencodable
from genevolve_graph.safety.redaction import redact_value

RESULTS_JSONL = "results.jsonl"
RESULTS_JSON = "results.json"
MANIFEST = "run.json"
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- stopping


class StopController:
    """Turns SIGINT/SIGTERM into a clean stop of a running stage."""

    def __init__(
        self,
        *,
        grace: float = 30.0,
        notify: Callable[[str], None] = print,
        on_stop: Callable[[], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self.grace = grace
        self.notify = notify
        self.on_stop = on_stop
        """Called once at the first stop request (worker processes are told to stop scheduling)."""
        self.on_cancel = on_cancel
        """Called when the rows in flight are to be cancelled (worker processes are told so)."""
        self.stopping = False
        self.signal: signal.Signals | None = None
        self.fatal: BaseException | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self._installed: list[int] = []
        self._timer: asyncio.TimerHandle | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop, sig)
                self._installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                pass

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()
        if self._timer:
            self._timer.cancel()

    def request_stop(self, sig: signal.Signals | int = signal.SIGINT) -> None:
        sig = signal.Signals(sig)
        if not self.stopping:
            self.stopping = True
            self.signal = sig
            if self.on_stop:
                self.on_stop()
            in_flight = sum(1 for t in self.tasks if not t.done())
            which = f"{in_flight} row(s)" if self.tasks else "rows"  # rows in worker processes are not counted here
            self.notify(
                f"{sig.name} received: no new rows start; the {which} in flight get {self.grace:g} s to finish, "
                f"then they are cancelled (a cancelled rollout continues from its checkpoint on resume). "
                f"{sig.name} again cancels them now."
            )
            self._timer = asyncio.get_running_loop().call_later(self.grace, self.cancel_in_flight)
        else:
            self.cancel_in_flight()

    def cancel_in_flight(self) -> None:
        self.stopping = True
        pending = [t for t in self.tasks if not t.done()]
        if pending:
            self.notify(f"cancelling {len(pending)} row(s) in flight")
        for task in pending:
            task.cancel()
        if self.on_cancel:
            self.on_cancel()

    def abort(self, exc: BaseException) -> None:
        """Something that makes recording impossible (disk full, ...): stop everything now."""
        if self.fatal is None:
            self.fatal = exc
        self.stopping = True
        self.cancel_in_flight()


async def _finish(future: "asyncio.Future[Any]") -> Any:
    """Await a future to its end even if the awaiting task is cancelled meanwhile (a journal
    write that started must be counted); re-raise the cancellation afterwards."""
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
            break
        except asyncio.CancelledError:
            if future.done():
                result = future.result()
                break
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


# --------------------------------------------------------------------------- stages and executors

RowFunction = Callable[[BatchRow], Awaitable[dict[str, Any]]]
Sink = Callable[[dict[str, Any]], None]


class Stage(Protocol):
    """What a stage hands to the engine: a row function and how to read its records."""

    name: str
    outcome_field: str
    """The record field the summary counts outcomes by."""
    error_field: str

    def is_failure(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` failed. Reads only fields a summary keeps (``id``,
        ``termination``, ``success``, ``*_status``, ``*error``): on resume it sees summaries."""
        ...

    def failure(self, row: BatchRow, message: str) -> dict[str, Any]:
        """The record of a row that could not run (``message`` says why)."""
        ...

    def open(self) -> AsyncContextManager[RowFunction]:
        """The row function, with the resources all rows share held open around it."""
        ...

    def report_lines(self, folder: "RunFolder") -> list[str]: ...


class Executor(Protocol):
    """Runs a stage's rows somewhere; each finished record goes to ``sink`` then ``records``."""

    async def execute(
        self,
        stage: Stage,
        rows: list[BatchRow],
        *,
        sink: Sink,
        records: MutableMapping[str, dict[str, Any]],
        controller: "StopController",
        progress: StageProgress | None,
    ) -> "StageSession": ...


# --------------------------------------------------------------------------- running a stage


@dataclass
class StageSession:
    """What one session of a stage did."""

    done: int = 0
    failed: int = 0
    seconds: float = 0.0


async def run_stage(
    rows: Iterable[BatchRow],
    worker: Callable[[BatchRow], Awaitable[dict[str, Any]]],
    *,
    sink: Callable[[dict[str, Any]], None],
    records: MutableMapping[str, dict[str, Any]],
    concurrency: int,
    controller: StopController,
    progress: StageProgress | None,
    is_failure: Callable[[dict[str, Any]], bool],
    failure: Callable[[BatchRow, str], dict[str, Any]],
) -> StageSession:
    """Run ``worker`` over ``rows`` with at most ``concurrency`` at a time; each record is
    handed to ``sink`` (run in a worker thread: ``ResultJournal.append`` writes and fsyncs
    it; in a worker process it goes to the parent) and then put into ``records``.

    A row that cannot run (text UTF-8 cannot encode) or whose worker raises is recorded as
    ``failure(row, message)``: one bad row fails alone. Only a recording failure stops the stage."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    loop = asyncio.get_running_loop()
    session = StageSession()
    slots = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one(row: BatchRow) -> None:
        try:
            record = await _attempt(row)
            append = loop.run_in_executor(None, sink, record)
            try:
                await _finish(append)
            except asyncio.CancelledError:
                _count(row, record)
                raise
            _count(row, record)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - a recording failure stops the stage
            controller.abort(exc)
        finally:
            slots.release()

    async def _attempt(row: BatchRow) -> dict[str, Any]:
        problem = unencodable(row.data)
        if problem:
            return failure(row, f"the row cannot run: {problem} cannot be encoded as UTF-8; fix that field of the input")
        try:
            return await worker(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the row's outcome, not the stage's
            return failure(row, f"internal error: {type(exc).__name__}: {exc}")

    def _count(row: BatchRow, record: dict[str, Any]) -> None:
        records[row.key] = record
        failed = is_failure(record)
        session.done += 1
        session.failed += int(failed)
        if progress is not None:
            progress.advance(failed=failed)

    for row in rows:
        await slots.acquire()
        if controller.stopping:
            slots.release()
            break
        task = asyncio.create_task(one(row), name=f"row-{row.key}")
        controller.tasks.add(task)
        task.add_done_callback(controller.tasks.discard)
    pending = list(controller.tasks)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    session.seconds = time.monotonic() - started
    return session


# --------------------------------------------------------------------------- the run folder


@dataclass
class RunFolder:
    """A stage's output folder: ``results.jsonl``, ``results.json``, ``run.json``."""

    path: Path
    manifest: dict[str, Any]
    journal: ResultJournal
    records: RecordedRows
    """The recorded rows by key: whole records are read from ``results.jsonl`` on demand,
    their summaries (outcome, error, failure fields) are in memory."""
    notes: list[str] = field(default_factory=list)
    resumed: bool = False
    lock_fd: int | None = None

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    def release(self) -> None:
        """Give up the folder's lock (the end of a session; process exit does it too)."""
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def save_manifest(self) -> None:
        self.manifest["updated"] = now_iso()
        # one line: 'rows' can be long; URLs lose their credentials (the settings are already redacted)
        write_json_atomic(self.path / MANIFEST, redacted_manifest(self.manifest), indent=None)

    def close_session(self, rows: list[BatchRow], session: "StageSession", controller: "StopController") -> None:
        """Record how the session ended and write ``results.json`` (skipped after a fatal
        error, so that the last good ``results.json`` stays)."""
        if controller.fatal is not None:
            return
        self.manifest["sessions"][-1].update(finished=now_iso(), done=session.done, failed=session.failed,
                                             interrupted=controller.signal.name if controller.signal else None)
        self.save_manifest()
        self.write_results_json(rows)

    def write_results_json(self, rows: list[BatchRow]) -> Path:
        """``results.json``: every recorded result, in input order (rows no longer in the
        input, if any, at the end), as one JSON array."""
        target = self.path / RESULTS_JSON
        order = {row.key: row.position for row in rows}
        for position, key in self.manifest.get("rows", []):
            order.setdefault(key, position)
        ordered = sorted(self.records, key=lambda key: (key not in order, order.get(key, 0)))
        self.journal.write_array(target, ordered)  # streamed: one record in memory at a time
        return target


def redacted_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with every URL in it redacted. The row list (``[position, id]`` per row:
    100,000 entries at scale) is walked only when one of its ids holds a URL at all, so a
    resume's start-up does not pay a recursive walk per row."""
    rows = manifest.get("rows")
    if not isinstance(rows, list) or any(type(entry) not in (list, tuple) or len(entry) != 2 or type(entry[0]) is not int
                                         or type(entry[1]) is not str or "://" in entry[1] for entry in rows):
        return redact_value(manifest)
    return {key: rows if key == "rows" else redact_value(value) for key, value in manifest.items()}


def open_run_folder(
    path: Path,
    *,
    stage: str,
    rows: list[BatchRow],
    resume: bool | None,
    input_path: str,
    input_digest: str,
    shard: str | None,
    settings: dict[str, Any],
    run_id: str | None = None,
    force_input: bool = False,
) -> RunFolder:
    """Create or reopen a stage's folder and check it belongs to this stage and shard.

    ``resume`` None means: resume when the folder already holds this stage's results.
    Raises ``InputError`` for a folder that cannot be used as asked.
    """
    path = Path(path).expanduser().resolve()  # absolute, so recorded image paths work from anywhere
    manifest_path = path / MANIFEST
    journal = ResultJournal(path / RESULTS_JSONL)
    existing = manifest_path.exists() or journal.path.exists()
    notes: list[str] = []
    if existing and resume is False:
        raise InputError(
            f"{path} already holds results of an earlier run; resume it (drop --no-resume) or pass another --out"
        )
    manifest: dict[str, Any] | None = None
    if manifest_path.exists():
        try:
            manifest = read_json(manifest_path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{manifest_path} is not readable JSON ({exc}); restore it or pass another --out") from None
        if manifest.get("stage") != stage:
            raise InputError(f"{path} holds a {manifest.get('stage')!r} run, not {stage!r}; pass another --out")
        if manifest.get("shard") != shard:
            raise InputError(
                f"{path} holds shard {manifest.get('shard') or 'none (the whole input)'}, not {shard or 'the whole input'}; "
                "each shard needs its own --out"
            )
        if run_id and manifest.get("run_id") != run_id:
            raise InputError(f"{path} belongs to run {manifest.get('run_id')!r}, not --run-id {run_id!r}; pass another --out")
        if manifest.get("input_sha256") and manifest["input_sha256"] != input_digest:
            if not force_input:
                raise InputError(
                    f"{path} was run on another input ({manifest.get('input')}, sha256 {str(manifest['input_sha256'])[:12]}...) "
                    f"than {input_path} (sha256 {input_digest[:12]}...); pass that input again, another --out, or "
                    "--force-input to continue this run with the new input (rows already recorded are kept and skipped by id)"
                )
            notes.append(
                f"note: the input differs from the one this run used before ({manifest.get('input')}); continuing with "
                f"{input_path} (--force-input); rows already recorded are kept and skipped by id"
            )
    elif existing and journal.path.exists():
        notes.append(f"note: {path} has results but no {MANIFEST}; continuing with a new run id (finished rows are skipped by id)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {path} (--out): {exc.strerror}") from None
    lock_fd = lock_folder(path)
    if manifest is None:
        manifest = {
            "tool": "genevolve-graph",
            "stage": stage,
            "run_id": run_id or f"{stage}-{os.urandom(6).hex()}",
            "created": now_iso(),
            "shard": shard,
            "attempts": {},
            "sessions": [],
        }
    settings = redact_value(settings)  # no user:password@ or secret query values in run.json
    first = (manifest.get("sessions") or [{}])[0].get("settings")
    if first:
        changed = sorted(k for k in set(first) | set(settings) if first.get(k) != settings.get(k))
        if changed:
            notes.append(
                "note: settings differ from the run's first session (" + ", ".join(f"{k}: {first.get(k)!r} -> {settings.get(k)!r}" for k in changed)
                + "); rows already recorded keep theirs"
            )
    inputs = manifest.setdefault("inputs", [])
    if not inputs and manifest.get("input_sha256"):  # a run folder written before the history was kept
        inputs.append({"input": manifest.get("input"), "input_sha256": manifest["input_sha256"], "since": manifest.get("created")})
    if not inputs or inputs[-1].get("input_sha256") != input_digest:
        inputs.append({"input": input_path, "input_sha256": input_digest, "since": now_iso()})
    manifest.update(input=input_path, input_sha256=input_digest, rows=[[row.position, row.key] for row in rows])
    manifest.setdefault("attempts", {})
    manifest.setdefault("sessions", []).append({"started": now_iso(), "settings": settings})
    try:
        records = journal.load()  # under the lock: nobody else is appending while a torn tail is cut
    except BaseException:
        os.close(lock_fd) if lock_fd is not None else None
        raise
    if journal.repaired_bytes:
        notes.append(
            f"note: {journal.path} ended in a torn line ({journal.repaired_bytes} bytes, a write interrupted by a crash); "
            "it was cut off and that row runs again"
        )
    return RunFolder(path=path, manifest=manifest, journal=journal, records=records, notes=notes, resumed=existing,
                     lock_fd=lock_fd)


LOCK_FILE = ".lock"


def lock_folder(path: Path) -> int | None:
    """An exclusive lock on the run folder for this session: two processes appending to one
    ``results.jsonl`` could record a row twice. Released when the session ends or the
    process dies (also by SIGKILL). ``None`` where ``fcntl`` does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)  # = file_modes.FILE_MODE: the umask decides, as for every file a run writes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(
            f"{path} is in use by another genevolve-graph process; wait for it to finish or stop it (Ctrl-C), then run again"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


SECRET_WORDS = ("key", "token", "secret", "password", "credential")


def redact_options(options: dict[str, Any]) -> dict[str, Any]:
    """Backend options for ``run.json``, without values that look like secrets."""
    return {name: ("***" if any(word in name.lower() for word in SECRET_WORDS) else value) for name, value in options.items()}


# --------------------------------------------------------------------------- the report


@dataclass
class StageReport:
    """The outcome of one session of a stage, with everything the summary needs."""

    stage: str
    folder: RunFolder
    rows: list[BatchRow]
    session: StageSession
    outcome_field: str
    error_field: str
    interrupted: signal.Signals | None = None
    fatal: BaseException | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def stage_records(self) -> list[dict[str, Any]]:
        """This input's recorded rows, whole (each read from ``results.jsonl``)."""
        return [self.folder.records[row.key] for row in self.rows if row.key in self.folder.records]

    @property
    def stage_summaries(self) -> list[dict[str, Any]]:
        """The summaries (``journal.summarize``) of this input's recorded rows: what the
        counts and top errors read, without loading whole records."""
        records = self.folder.records
        return [records.summary(row.key) for row in self.rows if row.key in records]

    @property
    def remaining(self) -> int:
        return sum(1 for row in self.rows if row.key not in self.folder.records)

    @property
    def complete(self) -> bool:
        return self.remaining == 0

    def outcome_counts(self) -> collections.Counter[str]:
        return collections.Counter(str(_outcome(r, self.outcome_field)) for r in self.stage_summaries)

    def top_errors(self, n: int = 3) -> list[tuple[str, int]]:
        errors = collections.Counter(
            str(r.get(self.error_field))[:160] for r in self.stage_summaries if r.get(self.error_field)
        )
        return errors.most_common(n)

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return 1
        if self.interrupted is not None:
            return SIGNAL_EXIT.get(self.interrupted, 1)
        return 0

    def summary_lines(self) -> list[str]:
        recorded = len(self.rows) - self.remaining
        counts = ", ".join(f"{name} {count}" for name, count in sorted(self.outcome_counts().items(), key=lambda kv: -kv[1])) or "none"
        rate = self.session.done / self.session.seconds if self.session.seconds > 0 else 0.0
        lines = [
            f"{self.stage}: {recorded}/{len(self.rows)} rows recorded ({counts}); {self.remaining} remaining",
            f"this session: {self.session.done} rows in {format_duration(self.session.seconds)} ({rate:.2f} rows/s), "
            f"{self.session.failed} failed",
        ]
        for message, count in self.top_errors():
            lines.append(f"  {count} x {message}")
        lines.extend(self.extra)
        lines.append(f"results: {self.folder.journal.path}" + (f" and {self.folder.path / RESULTS_JSON}" if (self.folder.path / RESULTS_JSON).exists() else ""))
        return lines


def _outcome(record: dict[str, Any], name: str) -> Any:
    if name == "success":
        return "rendered" if record.get("success") else "failed"
    return record.get(name)


def key_of(record: dict[str, Any]) -> str:
    return row_key(record["id"])


async def run_session(
    stage: Stage,
    rows: list[BatchRow],
    folder: RunFolder,
    executor: Executor,
    *,
    grace: float = 30.0,
    progress: bool = True,
    controller: StopController | None = None,
) -> StageReport:
    """One session of ``stage`` over the rows of ``folder`` not yet recorded, run by
    ``executor``; returns the report (the summary and exit code come from it)."""
    recorded = [r for r in rows if r.key in folder.records]
    bar = StageProgress(stage.name, total=len(rows), done=len(recorded),
                        failed=sum(1 for r in recorded if stage.is_failure(folder.records.summary(r.key))), enabled=progress)
    own_controller = controller is None
    controller = controller or StopController(grace=grace, notify=bar.note)
    todo = [row for row in rows if row.key not in folder.records]
    with stage_running(folder, bar, controller, own_controller=own_controller):
        session = await executor.execute(stage, todo, sink=folder.journal.append, records=folder.records,
                                         controller=controller, progress=bar)
    report = StageReport(stage.name, folder, rows, session, outcome_field=stage.outcome_field, error_field=stage.error_field,
                         interrupted=controller.signal, fatal=controller.fatal)
    report.extra.extend(stage.report_lines(folder))
    folder.close_session(rows, session, controller)
    return report


@contextlib.contextmanager
def stage_running(folder: RunFolder, progress: Any, controller: StopController, *, own_controller: bool) -> Iterator[None]:
    """The frame both stages run in: signal handling (when this stage owns the controller),
    the progress display, and the folder's notes shown first."""
    if own_controller:
        controller.install()
    try:
        with progress:
            for note in folder.notes:
                progress.note(note)
            yield
    finally:
        if own_controller:
            controller.uninstall()
