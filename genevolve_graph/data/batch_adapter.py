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
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from genevolve_graph.batch.engine import RESULTS_JSONL, StopController, open_run_folder, run_session
from genevolve_graph.batch.local import LocalExecutor
from genevolve_graph.batch.journal import JournalError, read_json, write_json_atomic, write_text_atomic
from genevolve_graph.batch.renders import RenderOptions, arun_renders, program_of
from genevolve_graph.batch.rollouts import RolloutOptions, arun_rollouts
from genevolve_graph.batch.rows import BatchRow, InputError, read_rows, row_key
from genevolve_graph.util.paths import file_stem

Item = BatchRow
"""One unit of work: ``key`` (the id as text), ``position``, ``data`` (the record so far)."""

__all__ = [
    "InputError", "Item", "ItemStage", "JournalError", "StageRun", "recorded_checkpoint", "StopController", "file_stem", "make_item", "program_of",
    "read_items", "read_json", "render_items", "row_key", "run_items", "teacher_rollouts", "write_json_atomic",
]


@dataclass
class StageRun:
    """What one session of a data stage did, whichever machinery ran it."""

    stage: str
    folder: Path
    records: list[dict[str, Any]]
    """Every recorded item of the stage (earlier sessions included), in input order."""
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


def read_items(path: Path, *, option: str) -> list[Item]:
    """The rows of a finished stage's JSONL (checked like batch input); none when the stage
    ran with nothing to do (its folder has ``run.json`` but no results)."""
    path = Path(path)
    if not path.exists() and (path.parent / "run.json").exists():
        return []
    if path.exists() and not path.read_text(encoding="utf-8").strip():
        return []
    return read_rows(path, option=option)


def _from_report(report: Any) -> StageRun:
    return StageRun(
        stage=report.stage, folder=report.folder.path, records=report.stage_records, total=len(report.rows),
        done_now=report.session.done, seconds=report.session.seconds, interrupted=report.interrupted,
        fatal=report.fatal, summary=report.summary_lines(),
    )


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
