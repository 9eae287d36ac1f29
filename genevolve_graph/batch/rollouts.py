"""Stage 1: agent rollouts for many prompts, on one event loop, recorded and resumable.

All rows share one compiled graph and one checkpointer. Every row is its own checkpointer
thread, ``<run_id>:<row id>`` (``#<attempt>`` appended when failed rows are retried), so a
row interrupted mid-trajectory continues from its last checkpoint when the run resumes,
and a row that finished but was not yet recorded is recorded without running again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from genevolve_graph.util import event_loop
from genevolve_graph.batch.engine import Executor, RunFolder, StageReport, StopController, open_run_folder, run_session
from genevolve_graph.batch.rows import BatchRow
from genevolve_graph.core.context import AgentContext

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
    from genevolve_graph.core.protocol import chat_dicts

    record = input_fields(row)
    record.update(result.record())
    record["seconds"] = round(seconds, 3)
    record["messages"] = chat_dicts(result.messages, protocol)
    return record


def error_record(row: BatchRow, thread_id: str, message: str, seconds: float, partial: Any = None) -> dict[str, Any]:
    """A row whose run raised (not a policy failure, which the graph records itself)."""
    from genevolve_graph.core.protocol import chat_dicts

    record = input_fields(row)
    record.update(
        prompt=row.prompt, gen_prompt=None, reference_images=[], termination="error",
        rounds=getattr(partial, "rounds", 0), tool_calls=getattr(partial, "tool_calls", 0), repairs=[],
        error=message, thread_id=thread_id, seconds=round(seconds, 3),
        messages=chat_dicts(partial.messages, "genevolve") if partial is not None else [],
    )
    return record


DURABILITY = ("sync", "async", "exit")
"""LangGraph's durability modes, and what a SIGKILL can lose in each (docs/batch.md):
``sync`` writes each step's checkpoint before the next step starts (a kill loses at most
the step in flight); ``async`` writes it while the next step runs (a kill loses at most the
steps in flight, the next one's policy call included); ``exit`` writes once, when the
trajectory ends (a kill loses the whole trajectories in flight: they start over on resume,
and the trace keeps only each thread's final state). A recorded row is never lost in any mode."""


def make_worker(saver: Any, graph: Any, ctx: AgentContext, *, run_id: str, attempts: dict[str, int],
                durability: str | None = None):
    """``worker(row) -> record`` for one checkpointer and one compiled graph (shared by all rows)."""
    from genevolve_graph.agent.runner import result_from_values, run_config, run_with_saver

    async def worker(row: BatchRow) -> dict[str, Any]:
        thread_id = thread_id_for(run_id, row.key, attempts.get(row.key, 1))
        started = time.monotonic()
        try:
            result = await run_with_saver(row.prompt, ctx, saver, thread_id=thread_id, graph=graph, durability=durability,
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


@dataclass
class RolloutStage:
    """Stage 1 as a row function for the engine: one checkpointer and one compiled graph
    shared by every row. Picklable (without ``services``), so worker processes get it whole."""

    ctx: AgentContext
    checkpoint_url: str
    run_id: str
    attempts: dict[str, int] = field(default_factory=dict)
    services: dict[str, Any] | None = None
    durability: str = "async"

    name = STAGE
    outcome_field = "termination"
    error_field = "error"

    def is_failure(self, record: dict[str, Any]) -> bool:
        return is_failure(record)

    def thread_id(self, row: BatchRow) -> str:
        return thread_id_for(self.run_id, row.key, self.attempts.get(row.key, 1))

    def failure(self, row: BatchRow, message: str) -> dict[str, Any]:
        return error_record(row, self.thread_id(row), message, 0.0)

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Callable[[BatchRow], Awaitable[dict[str, Any]]]]:
        from genevolve_graph.agent.graph import build_graph
        from genevolve_graph.persistence import open_checkpointer

        async with open_checkpointer(self.checkpoint_url) as saver:
            graph = build_graph(saver, **(self.services or {}))
            yield make_worker(saver, graph, self.ctx, run_id=self.run_id, attempts=self.attempts, durability=self.durability)

    def report_lines(self, folder: RunFolder) -> list[str]:
        if self.checkpoint_url.startswith(("http://", "https://")):
            return [f"trace: the threads of the LangGraph Server at {self.checkpoint_url} (metadata run_id {self.run_id})"]
        # The absolute URL, as ``run`` prints it: run.json keeps it relative to the folder
        # (so a moved folder resumes), but a printed relative URL misleads (issue 24).
        recorded = folder.manifest.get("checkpoint") or self.checkpoint_url
        return [f"trace: {redact_url(absolute_checkpoint(recorded, folder))} (threads {self.run_id}:<id>)"]

    # ------------------------------------------------ on a LangGraph Server (batch.server)

    def thread_label(self, row: BatchRow) -> str:
        return self.thread_id(row)

    def remote_input(self, row: BatchRow) -> dict[str, Any]:
        return {"request": row.prompt}

    def remote_context(self) -> dict[str, Any]:
        from genevolve_graph.batch.server import context_for_server

        return context_for_server(self.ctx)

    def remote_record(self, row: BatchRow, thread_id: str, values: dict[str, Any], seconds: float) -> dict[str, Any]:
        """The stage-1 record from a server thread's final state (JSON, as the API sends it)."""
        from langchain_core.messages import messages_from_dict

        from genevolve_graph.agent.runner import result_from_values
        from genevolve_graph.core.state import Program

        values = dict(values)
        if values.get("program"):
            values["program"] = Program.model_validate(values["program"])
        values["messages"] = messages_from_dict([{"type": m["type"], "data": m} for m in values.get("messages") or []])
        record = rollout_record(row, result_from_values(thread_id, values), self.ctx.protocol, seconds)
        record["server_thread"] = True
        return record


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
    force_input: bool = False
    """Continue a run whose folder was started on another input (kept in run.json's ``inputs``)."""
    durability: str = "async"
    """When checkpoints are written: ``sync`` | ``async`` | ``exit`` (see ``DURABILITY``)."""
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
    from genevolve_graph.safety.redaction import redact_url as redact

    return redact(url)


DEFAULT_TRACE = "trace.sqlite"


def absolute_checkpoint(url: str, folder: RunFolder | None) -> str:
    """A SQLite URL with an absolute path: a relative one is taken relative to the run folder
    when ``folder`` is given (what ``run.json`` holds) and to the working directory otherwise
    (what a user typed)."""
    if not url.startswith("sqlite:///"):
        return url
    path = Path(url[len("sqlite:///"):]).expanduser()
    if not path.is_absolute():
        path = (folder.path / path) if folder is not None else path.resolve()
    return f"sqlite:///{path}"


def relative_checkpoint(url: str, folder: RunFolder) -> str:
    """What ``run.json`` records: a SQLite file inside the run folder relative to it, so a
    moved or copied folder resumes into its own database; anything else as it is."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if path.is_absolute() and path.is_relative_to(folder.path):
            return f"sqlite:///{path.relative_to(folder.path).as_posix()}"
    return url


def checkpoint_in_folder(recorded: str, folder: RunFolder) -> str:
    """The checkpointer a run folder recorded, found where the folder is now. Run folders
    written before paths were relative hold an absolute path: when that names a file of the
    same name that this (moved or copied) folder holds, the folder's own file is used."""
    url = absolute_checkpoint(recorded, folder)
    if url.startswith("sqlite:///") and Path(recorded[len("sqlite:///"):]).is_absolute():
        path = Path(url[len("sqlite:///"):])
        own = folder.path / path.name
        if path.parent != folder.path and own.is_file():
            return f"sqlite:///{own}"
    return url


def prepare_rollouts(rows: list[BatchRow], ctx: AgentContext, options: RolloutOptions) -> tuple[RunFolder, str]:
    """Open the run folder and settle the checkpoint URL (raises ``InputError``)."""
    settings = {**context_settings(ctx), **options.extra_settings}
    folder = open_run_folder(
        options.out_dir, stage=STAGE, rows=rows, resume=options.resume, input_path=options.input_path,
        input_digest=options.input_digest, shard=options.shard, settings=settings, run_id=options.run_id,
        force_input=options.force_input,
    )
    try:
        return _settle(folder, options)
    except BaseException:
        folder.release()
        raise


def _settle(folder: RunFolder, options: RolloutOptions) -> tuple[RunFolder, str]:
    from genevolve_graph.batch.rows import InputError

    recorded = folder.manifest.get("checkpoint")
    earlier = checkpoint_in_folder(recorded, folder) if recorded else None
    url = options.checkpoint
    if url is None:
        if recorded and "***" in recorded:
            raise InputError(
                f"this run records its threads in {recorded}; pass that URL again with --checkpoint (passwords are not stored)"
            )
        url = earlier or f"sqlite:///{folder.path / DEFAULT_TRACE}"
        if earlier and earlier != absolute_checkpoint(recorded, folder):
            folder.notes.append(f"note: this run folder was moved or copied; its threads continue in {redact_url(earlier)}")
    else:
        url = absolute_checkpoint(url, None)
        if earlier and redact_url(url) != redact_url(earlier):
            folder.notes.append(
                f"note: this run used the checkpointer {redact_url(earlier)} before; rows interrupted there start over in {redact_url(url)}"
            )
    folder.manifest["checkpoint"] = redact_url(relative_checkpoint(url, folder))
    if options.retry_failed:
        attempts = folder.manifest.setdefault("attempts", {})
        retry = [key for key, summary in folder.records.summaries() if summary.get("termination") == "error"]
        for key in retry:
            attempts[key] = max(2, int(attempts.get(key, 1)) + 1)
        if retry:
            folder.save_manifest()  # attempts first: a crash between the two steps only wastes a thread
            folder.journal.drop(retry)
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
    executor: Executor | None = None,
) -> StageReport:
    """Run stage 1 over ``rows`` (rows already recorded are skipped) and report.

    ``services`` go to ``build_graph`` (an injected policy, search backend, ...);
    ``executor`` replaces the one ``options`` describes (``--workers``).
    """
    if options.workers > 1 and services:
        raise ValueError("injected services cannot be sent to worker processes; use workers=1")
    if folder is None or checkpoint_url is None:
        folder, checkpoint_url = prepare_rollouts(rows, ctx, options)
    try:
        return await _rollouts(rows, ctx, options, folder, checkpoint_url, controller, services, executor)
    finally:
        folder.release()


async def _rollouts(rows: list[BatchRow], ctx: AgentContext, options: RolloutOptions, folder: RunFolder,
                    checkpoint_url: str, controller: StopController | None, services: dict[str, Any] | None,
                    executor: Executor | None) -> StageReport:
    from genevolve_graph.batch.executors import executor_for

    run_id = folder.run_id
    attempts = {key: int(value) for key, value in folder.manifest.get("attempts", {}).items()}
    if options.durability not in DURABILITY:
        raise ValueError(f"durability must be one of {DURABILITY}, not {options.durability!r}")
    stage = RolloutStage(ctx.with_updates(renderer="none", experiment=ctx.experiment or run_id), checkpoint_url, run_id,
                         attempts, services, options.durability)
    executor = executor or executor_for(concurrency=options.concurrency, workers=options.workers)
    return await run_session(stage, rows, folder, executor, grace=options.grace, progress=options.progress,
                             controller=controller)


def run_rollouts(rows: list[BatchRow], ctx: AgentContext, options: RolloutOptions) -> StageReport:
    """Synchronous entry point (scripts, the command line)."""
    return event_loop.run(arun_rollouts(rows, ctx, options))
