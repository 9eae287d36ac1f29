"""Batch stages at benchmark scale: stage 1 (rollouts) and stage 2 (rendering), resumable.

- ``rows``: reading and checking JSONL / JSON-array input.
- ``journal``: durable ``results.jsonl`` (fsync per row, torn-tail repair), atomic JSON files.
- ``engine``: the stage engine (loop, run folder, journal, progress, signals, summaries)
  and the two small interfaces it runs: ``Stage`` (a row function) and ``Executor``.
- ``rollouts`` (stage 1) and ``renders`` (stage 2): stages.
- ``executors``: ``LocalExecutor`` (``local``), ``ProcessExecutor`` (``workers``) and
  ``ServerExecutor`` (``server``, LangGraph Server through langgraph-sdk).
- ``shards``: ``--shard i/n`` and ``merge``; ``bench``: the GenEvolve-Bench reader.

The command-line front end is ``genevolve_graph.cli.batch`` (``register(app)``, wired by ``genevolve_graph.cli.app``).
"""

from genevolve_graph.batch.engine import Executor, Stage, StageReport, StopController, run_session
from genevolve_graph.batch.journal import JournalError, ResultJournal
from genevolve_graph.batch.renders import RenderOptions, RenderStage, arun_renders, program_of, run_renders
from genevolve_graph.batch.rollouts import RolloutOptions, RolloutStage, arun_rollouts, run_rollouts, thread_id_for
from genevolve_graph.batch.rows import BatchRow, InputError, read_rows
from genevolve_graph.batch.shards import merge_runs, parse_shard, select_shard

__all__ = [
    "BatchRow", "Executor", "InputError", "JournalError", "RenderOptions", "RenderStage", "ResultJournal", "RolloutOptions",
    "RolloutStage", "Stage", "StageReport", "StopController", "run_session", "arun_renders", "arun_rollouts", "merge_runs", "parse_shard", "program_of", "read_rows",
    "run_renders", "run_rollouts", "select_shard", "thread_id_for",
]
