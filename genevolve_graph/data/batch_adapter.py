"""The one place the data pipeline touches the batch package.

Every data stage runs on the batch machinery: a run folder with ``results.jsonl``
appended and fsynced per item (exactly once after SIGKILL, torn tail cut off), ``run.json``,
a folder lock, the progress bar, clean stops on SIGINT/SIGTERM, and for the teacher and the
renders the batch stages themselves (``arun_rollouts``, ``arun_renders``). The batch package
is being reshaped into one stage engine with row functions; only this module needs to be
re-pointed then. Nothing else in ``genevolve_graph.data`` imports ``genevolve_graph.batch``.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from genevolve_graph.batch.engine import RESULTS_JSONL, StopController, open_run_folder, run_stage, stage_running
from genevolve_graph.batch.journal import JournalError, read_json, write_json_atomic
from genevolve_graph.batch.progress import StageProgress
from genevolve_graph.batch.renders import RenderOptions, arun_renders, program_of
from genevolve_graph.batch.rollouts import RolloutOptions, arun_rollouts
from genevolve_graph.batch.rows import BatchRow, InputError, file_stem, read_rows, row_key

Item = BatchRow
"""One unit of work: ``key`` (the id as text), ``position``, ``data`` (the record so far)."""

__all__ = [
    "InputError", "Item", "JournalError", "StageRun", "StopController", "file_stem", "make_item", "program_of",
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
    """Run ``worker`` (which never raises: failures are part of its record) over the items
    not yet recorded in ``out_dir/results.jsonl``, appending each record as it finishes."""
    import asyncio

    from genevolve_graph.batch.engine import StageReport

    reason_field = outcome_field.replace("_status", "_reason")

    async def guarded(item: Item) -> dict[str, Any]:
        """One bad item fails alone: an unexpected error becomes that item's infrastructure failure."""
        try:
            return await worker(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as the item's outcome
            return {**item.data, outcome_field: "infra_error", reason_field: "internal_error",
                    error_field: f"internal error: {type(exc).__name__}: {str(exc)[:300]}"}

    folder = open_run_folder(out_dir, stage=stage, rows=items, resume=resume, input_path=input_path,
                             input_digest=input_digest, shard=None, settings=settings)
    try:
        if retry_infra:
            _drop_for_retry(folder, lambda r: r.get(outcome_field) == "infra_error")
        folder.save_manifest()
        bar = StageProgress(stage, total=len(items), done=sum(1 for i in items if i.key in folder.records),
                            failed=sum(1 for i in items if i.key in folder.records and is_failure(folder.records[i.key])),
                            enabled=progress)
        own = controller is None
        controller = controller or StopController(notify=bar.note)
        todo = [item for item in items if item.key not in folder.records]
        with stage_running(folder, bar, controller, own_controller=own):
            session = await run_stage(todo, guarded, sink=folder.journal.append, records=folder.records,
                                      concurrency=concurrency, controller=controller, progress=bar, is_failure=is_failure)
        report = StageReport(stage, folder, items, session, outcome_field=outcome_field, error_field=error_field,
                             interrupted=controller.signal, fatal=controller.fatal)
        folder.close_session(items, session, controller)
        return _from_report(report)
    finally:
        folder.release()


def _drop_for_retry(folder: Any, failed: Callable[[dict[str, Any]], bool]) -> int:
    """Forget the recorded infrastructure failures so they run again (the journal is
    rewritten atomically first; each id still appears once)."""
    retry = [key for key, record in folder.records.items() if failed(record)]
    for key in retry:
        del folder.records[key]
    if retry:
        folder.journal.rewrite(folder.records.values())
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
) -> tuple[StageRun, str]:
    """The teacher's trajectories through the batch rollout stage (each row one checkpointer
    thread); returns the run and the checkpoint URL the threads are in."""
    from genevolve_graph.batch.rollouts import prepare_rollouts

    options = RolloutOptions(out_dir=out_dir, checkpoint=checkpoint, concurrency=concurrency, resume=resume,
                             input_path=input_path, input_digest=input_digest, progress=progress, extra_settings=settings,
                             retry_failed=retry_infra)
    folder, url = prepare_rollouts(rows, ctx, options)
    report = await arun_rollouts(rows, ctx, options, folder=folder, checkpoint_url=url, services=services)
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
) -> StageRun:
    """Render the rows' programs through the batch render stage (``images/<id>.png``);
    a row without a program is recorded as failed, never rendered from its request."""
    from genevolve_graph.batch.renders import prepare_renders

    options = RenderOptions(out_dir=out_dir, concurrency=concurrency, resume=resume, fallback="skip",
                            input_path=input_path, progress=progress, extra_settings=settings)
    folder = prepare_renders(rows, ctx, options)
    if retry_infra:
        try:
            _drop_for_retry(folder, lambda r: not r.get("success"))
        except BaseException:
            folder.release()
            raise
    report = await arun_renders(rows, ctx, options, folder=folder, renderer=renderer)
    return _from_report(report)


def results_path(folder: Path) -> Path:
    return Path(folder) / RESULTS_JSONL
