"""Stage 1: agent rollouts for many prompts, on one event loop, recorded and resumable.

All rows share one compiled graph and one checkpointer. Every row is its own checkpointer
thread, ``<run_id>:<row id>`` (``#<attempt>`` appended when failed rows are retried), so a
row interrupted mid-trajectory continues from its last checkpoint when the run resumes,
and a row that finished but was not yet recorded is recorded without running again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genevolve_graph.batch.engine import RunFolder, StageReport, StopController, open_run_folder, run_stage, stage_running
from genevolve_graph.batch.progress import StageProgress
from genevolve_graph.batch.rows import BatchRow
from genevolve_graph.context import AgentContext

STAGE = "rollouts"


def thread_id_for(run_id: str, key: str, attempt: int = 1) -> str:
    """The checkpointer thread of a row: derived from the run and the row id."""
    return f"{run_id}:{key}" if attempt <= 1 else f"{run_id}:{key}#{attempt}"


def is_failure(record: dict[str, Any]) -> bool:
    """A rollout counts as failed when it produced no program."""
    return record.get("termination") != "answer"


def input_fields(row: BatchRow) -> dict[str, Any]:
    return {"id": row.data["id"], **row.data}


def rollout_record(row: BatchRow, result: Any, protocol: str, seconds: float) -> dict[str, Any]:
    """The stage-1 result of DESIGN.md §4: the input row plus the rollout's fields."""
    from genevolve_graph.protocol import chat_dicts

    record = input_fields(row)
    record.update(result.record())
    record["seconds"] = round(seconds, 3)
    record["messages"] = chat_dicts(result.messages, protocol)
    return record


def error_record(row: BatchRow, thread_id: str, message: str, seconds: float, partial: Any = None) -> dict[str, Any]:
    """A row whose run raised (not a policy failure, which the graph records itself)."""
    from genevolve_graph.protocol import chat_dicts

    record = input_fields(row)
    record.update(
        prompt=row.prompt, gen_prompt=None, reference_images=[], termination="error",
        rounds=getattr(partial, "rounds", 0), tool_calls=getattr(partial, "tool_calls", 0), repairs=[],
        error=message, thread_id=thread_id, seconds=round(seconds, 3),
        messages=chat_dicts(partial.messages, "genevolve") if partial is not None else [],
    )
    return record


def make_worker(saver: Any, graph: Any, ctx: AgentContext, *, run_id: str, attempts: dict[str, int]):
    """``worker(row) -> record`` for one checkpointer and one compiled graph (shared by all rows)."""
    from genevolve_graph.runner import result_from_values, run_config, run_with_saver

    async def worker(row: BatchRow) -> dict[str, Any]:
        thread_id = thread_id_for(run_id, row.key, attempts.get(row.key, 1))
        started = time.monotonic()
        try:
            result = await run_with_saver(row.prompt, ctx, saver, thread_id=thread_id, graph=graph,
                                          row_id=row.key, batch_run=run_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as the row's outcome
            try:
                snapshot = await graph.aget_state(run_config(ctx, thread_id))
                partial = result_from_values(thread_id, snapshot.values) if snapshot.values else None
            except Exception:  # noqa: BLE001 - the state may be unreadable for the same reason
                partial = None
            return error_record(row, thread_id, f"internal error: {type(exc).__name__}: {exc}", time.monotonic() - started, partial)
        return rollout_record(row, result, ctx.protocol, time.monotonic() - started)

    return worker


async def rollouts_in_loop(
    rows: list[BatchRow],
    ctx: AgentContext,
    *,
    checkpoint_url: str,
    run_id: str,
    attempts: dict[str, int],
    concurrency: int,
    sink: Any,
    records: dict[str, dict[str, Any]],
    controller: StopController,
    progress: StageProgress | None,
    services: dict[str, Any] | None = None,
) -> Any:
    """The rows on this event loop: one checkpointer, one compiled graph, ``concurrency`` in flight."""
    from genevolve_graph.graph import build_graph
    from genevolve_graph.persistence import open_checkpointer

    async with open_checkpointer(checkpoint_url) as saver:
        graph = build_graph(saver, **(services or {}))
        worker = make_worker(saver, graph, ctx, run_id=run_id, attempts=attempts)
        return await run_stage(rows, worker, sink=sink, records=records, concurrency=concurrency,
                               controller=controller, progress=progress, is_failure=is_failure)


@dataclass
class RolloutOptions:
    """Where and how a rollout stage runs (the policy and tools are in the context)."""

    out_dir: Path
    checkpoint: str | None = None
    """Checkpointer URL; default ``sqlite:///<out_dir>/trace.sqlite`` (or the run's earlier one)."""
    concurrency: int = 16
    """Trajectories in flight at once (over all worker processes)."""
    workers: int = 1
    """Worker processes, each with its own event loop (for fast endpoints, where one
    interpreter's CPU becomes the limit); 1 runs everything on the caller's loop."""
    resume: bool | None = None
    retry_failed: bool = False
    run_id: str | None = None
    shard: str | None = None
    input_path: str = ""
    input_digest: str = ""
    grace: float = 30.0
    progress: bool = True
    extra_settings: dict[str, Any] = field(default_factory=dict)


def context_settings(ctx: AgentContext) -> dict[str, Any]:
    """The settings worth comparing between sessions (no secrets: keys are never in the context)."""
    return {
        "policy": ctx.policy, "model": ctx.model, "base_url": redact_url(ctx.base_url), "protocol": ctx.protocol,
        "temperature": ctx.temperature, "top_p": ctx.top_p, "max_tokens": ctx.max_tokens, "max_rounds": ctx.max_rounds,
        "max_tool_calls": ctx.max_tool_calls, "max_refs": ctx.n_max_reference_images, "search": ctx.search,
        "image_search": ctx.image_search, "corpus": ctx.corpus, "image_dir": ctx.image_dir, "skills_dir": ctx.skills_dir,
        "system_prompt_file": ctx.system_prompt_file, "max_retries": ctx.max_retries, "request_timeout": ctx.request_timeout,
    }


def redact_url(url: str) -> str:
    """A checkpoint URL without its password, for the manifest and messages."""
    from genevolve_graph.redaction import redact_url as redact

    return redact(url)


def prepare_rollouts(rows: list[BatchRow], ctx: AgentContext, options: RolloutOptions) -> tuple[RunFolder, str]:
    """Open the run folder and settle the checkpoint URL (raises ``InputError``)."""
    settings = {**context_settings(ctx), **options.extra_settings}
    folder = open_run_folder(
        options.out_dir, stage=STAGE, rows=rows, resume=options.resume, input_path=options.input_path,
        input_digest=options.input_digest, shard=options.shard, settings=settings, run_id=options.run_id,
    )
    try:
        return _settle(folder, options)
    except BaseException:
        folder.release()
        raise


def _settle(folder: RunFolder, options: RolloutOptions) -> tuple[RunFolder, str]:
    from genevolve_graph.batch.rows import InputError

    recorded = folder.manifest.get("checkpoint")
    url = options.checkpoint
    if url is None:
        if recorded and "***" in recorded:
            raise InputError(
                f"this run records its threads in {recorded}; pass that URL again with --checkpoint (passwords are not stored)"
            )
        url = recorded or f"sqlite:///{(folder.path / 'trace.sqlite').resolve()}"
    elif recorded and redact_url(url) != recorded:
        folder.notes.append(
            f"note: this run used the checkpointer {recorded} before; rows interrupted there start over in {redact_url(url)}"
        )
    folder.manifest["checkpoint"] = redact_url(url)
    if options.retry_failed:
        attempts = folder.manifest.setdefault("attempts", {})
        retry = [key for key, record in folder.records.items() if record.get("termination") == "error"]
        for key in retry:
            attempts[key] = max(2, int(attempts.get(key, 1)) + 1)
        if retry:
            folder.save_manifest()  # attempts first: a crash between the two steps only wastes a thread
            for key in retry:
                del folder.records[key]
            folder.journal.rewrite(folder.records.values())
            folder.notes.append(f"retrying {len(retry)} row(s) that ended with termination 'error', each on a fresh thread")
    folder.save_manifest()
    return folder, url


async def arun_rollouts(
    rows: list[BatchRow],
    ctx: AgentContext,
    options: RolloutOptions,
    *,
    folder: RunFolder | None = None,
    checkpoint_url: str | None = None,
    controller: StopController | None = None,
    services: dict[str, Any] | None = None,
) -> StageReport:
    """Run stage 1 over ``rows`` (rows already recorded are skipped) and report.

    ``services`` go to ``build_graph`` (an injected policy, search backend, ...).
    """
    if options.workers > 1 and services:
        raise ValueError("injected services cannot be sent to worker processes; use workers=1")
    if folder is None or checkpoint_url is None:
        folder, checkpoint_url = prepare_rollouts(rows, ctx, options)
    try:
        return await _rollouts(rows, ctx, options, folder, checkpoint_url, controller, services)
    finally:
        folder.release()


async def _rollouts(rows: list[BatchRow], ctx: AgentContext, options: RolloutOptions, folder: RunFolder,
                    checkpoint_url: str, controller: StopController | None, services: dict[str, Any] | None) -> StageReport:
    progress = StageProgress(STAGE, total=len(rows), done=sum(1 for r in rows if r.key in folder.records),
                             failed=sum(1 for r in rows if r.key in folder.records and is_failure(folder.records[r.key])),
                             enabled=options.progress)
    own_controller = controller is None
    controller = controller or StopController(grace=options.grace, notify=progress.note)
    todo = [row for row in rows if row.key not in folder.records]
    attempts = {key: int(value) for key, value in folder.manifest.get("attempts", {}).items()}
    run_id = folder.run_id
    ctx = ctx.with_updates(renderer="none", experiment=ctx.experiment or run_id)
    with stage_running(folder, progress, controller, own_controller=own_controller):
        if options.workers > 1 and len(todo) > 1:
            from genevolve_graph.batch.workers import run_in_processes

            session = await run_in_processes(
                todo, ctx, checkpoint_url=checkpoint_url, run_id=run_id, attempts=attempts,
                concurrency=options.concurrency, workers=options.workers, sink=folder.journal.append,
                records=folder.records, controller=controller, progress=progress, is_failure=is_failure,
            )
        else:
            session = await rollouts_in_loop(
                todo, ctx, checkpoint_url=checkpoint_url, run_id=run_id, attempts=attempts,
                concurrency=options.concurrency, sink=folder.journal.append, records=folder.records,
                controller=controller, progress=progress, services=services,
            )
    report = StageReport(STAGE, folder, rows, session, outcome_field="termination", error_field="error",
                         interrupted=controller.signal, fatal=controller.fatal)
    report.extra.append(f"trace: {folder.manifest.get('checkpoint')} (threads {run_id}:<id>)")
    folder.close_session(rows, session, controller)
    return report


def run_rollouts(rows: list[BatchRow], ctx: AgentContext, options: RolloutOptions) -> StageReport:
    """Synchronous entry point (scripts, the command line)."""
    return asyncio.run(arun_rollouts(rows, ctx, options))
