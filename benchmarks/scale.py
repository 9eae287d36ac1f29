"""How the batch stage, its resume and the export grow from 10^3 to 10^5 rows.

For each size (1k and 10k rows; 100k with ``--full``), in a fresh process so that peak
memory is that size's own:

1. the batch stage (``arun_rollouts``: the scripted policy server in its own process, SQLite
   checkpoints, concurrency 64, short trajectories) from an empty run folder;
2. the bare thread-pool loop over the same server and rows (``batch_throughput.py``'s
   contender: ``openai`` client, no tools, no checkpoints, no records);
3. a resume of the batch folder with 90% of the rows done (every tenth row dropped from the
   journal and its checkpoints deleted, so it runs again from scratch): seconds from the call
   to the first dispatched row, and the whole resume;
4. ``export`` of the run's trace database, in another fresh process: trajectories per second
   and that process's peak memory.

Printed per size: peak RSS, CPU per row and per round, wall against the latency bound
(rows x rounds x latency / concurrency), trace-database bytes per row, resume start-up,
export rate and memory; then the growth from the smallest to the largest size and one
PASS/MISS line per target of issue 25:

- batch peak RSS at the largest size within 1.2x that at the smallest;
- batch throughput at least 0.8x the bare loop's, at every size;
- a resume with 90% done starts dispatching within 2 s (at the largest size);
- export at least 1,000 trajectories/s, its peak memory within 1.2x from smallest to largest.

Run: python benchmarks/scale.py [--sizes 1000 10000] [--full] [--rounds 2] [--latency-ms 20] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANGSMITH_TRACING", "false")

MEMORY_GROWTH = 1.2
THROUGHPUT_RATIO = 0.8
RESUME_START_S = 2.0
EXPORT_RATE = 1000.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- one size, in its own process


def measure_batch(rows: int, rounds: int, latency: float, concurrency: int, workdir: Path) -> dict[str, Any]:
    import batch_throughput as bt

    from genevolve_graph.batch import local
    from genevolve_graph.batch.journal import ResultJournal
    from genevolve_graph.batch.rollouts import RolloutOptions, arun_rollouts
    from genevolve_graph.batch.rows import read_rows
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.util import event_loop

    server = bt.ServerHandle(rows, rounds, latency, "process")
    try:
        wall, cpu, report = event_loop.run(bt.run_batch(server.base_url, rows, rounds, concurrency, workdir, "sqlite", 1))
        batch_rss = peak_rss_mib()
        stats = server.stats()
        recorded = len(report.folder.records)
        run = workdir / "run"
        db_bytes = (run / "trace.sqlite").stat().st_size

        server.reset()
        loop_wall = bt.run_thread_pool(server.base_url, rows, rounds, concurrency)

        # a resume with 90% done: every tenth row forgotten, then the same command again
        journal = ResultJournal(run / "results.jsonl")
        records = journal.load()
        left = [key for i, key in enumerate(list(records)) if i % 10 == 0]
        dropped = journal.drop(left)
        forget_threads(run / "trace.sqlite", [f"{report.folder.run_id}:{key}" for key in left])
        dispatched: list[float] = []
        original = local.run_stage

        async def timed_run_stage(*args: Any, **kwargs: Any) -> Any:
            dispatched.append(time.perf_counter())
            return await original(*args, **kwargs)

        local.run_stage = timed_run_stage
        ctx = AgentContext(policy="openai", base_url=server.base_url, model="bench", max_rounds=max(11, rounds))
        started = time.perf_counter()
        resumed = event_loop.run(arun_rollouts(read_rows(workdir / "input.jsonl"), ctx,
                                               RolloutOptions(out_dir=run, concurrency=concurrency, progress=False)))
        resume_wall = time.perf_counter() - started
        local.run_stage = original
    finally:
        server.close()
    return {
        "rows": rows, "rounds": rounds, "recorded": recorded, "errors": stats["errors"],
        "batch_wall": wall, "batch_cpu": cpu, "batch_peak_rss_mib": batch_rss,
        "ideal_wall": rows * rounds * latency / concurrency,
        "loop_wall": loop_wall, "trace_db_bytes": db_bytes,
        "resume_dropped": dropped, "resume_start_s": (dispatched[0] - started) if dispatched else float("nan"),
        "resume_wall": resume_wall, "resume_complete": resumed.complete,
        "trace_db": str(run / "trace.sqlite"),
    }


def forget_threads(db: Path, thread_ids: list[str]) -> None:
    """Delete the checkpoints of ``thread_ids``: those rows never ran, as far as a resume can tell."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        for table in ("checkpoints", "writes"):
            conn.executemany(f"DELETE FROM {table} WHERE thread_id = ?", [(t,) for t in thread_ids])


def measure_export(db: Path, out: Path) -> dict[str, Any]:
    from genevolve_graph.persistence import open_checkpointer_sync
    from genevolve_graph.training.export import ExportReport, export_threads
    from genevolve_graph.training.sft_data import JsonlWriter

    report = ExportReport()
    started = time.perf_counter()
    with open_checkpointer_sync(f"sqlite:///{db}") as saver, JsonlWriter(out) as writer:
        for record in export_threads(saver, data_root=out.parent, report=report):
            writer.write(record.to_json())
    seconds = time.perf_counter() - started
    return {"exported": writer.count, "threads": report.threads, "export_s": seconds, "export_peak_rss_mib": peak_rss_mib()}


def child(args: argparse.Namespace) -> None:
    if args.export:
        result = measure_export(Path(args.export), Path(args.workdir) / "sft.jsonl")
    else:
        result = measure_batch(args.one, args.rounds, args.latency_ms / 1000, args.concurrency, Path(args.workdir))
    print("RESULT " + json.dumps(result), flush=True)


def run_child(*extra: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"the measuring process failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


# --------------------------------------------------------------------------- the report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--full", action="store_true", help="add 100,000 rows")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--export", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one or args.export:
        child(args)
        return
    sizes = sorted(set(args.sizes + ([100_000] if args.full else [])))
    common = ["--rounds", str(args.rounds), "--latency-ms", str(args.latency_ms), "--concurrency", str(args.concurrency)]
    print(f"scale: sizes {sizes}, {args.rounds} rounds per row, {args.latency_ms:g} ms reply latency, concurrency {args.concurrency}; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            row = run_child("--one", str(size), "--workdir", tmp, *common)
            row.update(run_child("--export", row["trace_db"], "--workdir", tmp, *common))
        rounds = size * args.rounds
        row["cpu_per_row_ms"] = row["batch_cpu"] / size * 1000
        row["cpu_per_round_ms"] = row["batch_cpu"] / rounds * 1000
        row["throughput_vs_loop"] = row["loop_wall"] / row["batch_wall"]
        row["wall_vs_bound"] = row["batch_wall"] / row["ideal_wall"]
        row["db_bytes_per_row"] = row["trace_db_bytes"] / size
        row["export_rate"] = row["exported"] / row["export_s"] if row["export_s"] else float("nan")
        results.append(row)
        print(f"{size:>7} rows: batch peak RSS {row['batch_peak_rss_mib']:.0f} MiB, CPU {row['cpu_per_row_ms']:.1f} ms/row "
              f"({row['cpu_per_round_ms']:.1f} ms/round), wall {row['batch_wall']:.1f} s = {row['wall_vs_bound']:.2f}x the latency bound, "
              f"throughput {row['throughput_vs_loop']:.2f}x the bare loop ({row['loop_wall']:.1f} s); trace DB {row['db_bytes_per_row']:.0f} B/row; "
              f"resume ({row['resume_dropped']} rows left) starts in {row['resume_start_s']:.2f} s, done in {row['resume_wall']:.1f} s; "
              f"export {row['export_rate']:.0f} trajectories/s ({row['exported']} of {row['threads']}), peak RSS {row['export_peak_rss_mib']:.0f} MiB; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    small, large = results[0], results[-1]
    memory = large["batch_peak_rss_mib"] / small["batch_peak_rss_mib"]
    export_memory = large["export_peak_rss_mib"] / small["export_peak_rss_mib"]
    print(f"growth {small['rows']} -> {large['rows']} rows: batch peak RSS x{memory:.2f}, CPU per round x{large['cpu_per_round_ms'] / small['cpu_per_round_ms']:.2f}, "
          f"trace DB per row x{large['db_bytes_per_row'] / small['db_bytes_per_row']:.2f}, resume start x{large['resume_start_s'] / small['resume_start_s']:.2f}, "
          f"export rate x{large['export_rate'] / small['export_rate']:.2f}, export peak RSS x{export_memory:.2f}")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    worst = min(r["throughput_vs_loop"] for r in results)
    print(f"{verdict(memory <= MEMORY_GROWTH)} batch memory bounded by concurrency: peak RSS x{memory:.2f} from {small['rows']} to {large['rows']} rows (target <= {MEMORY_GROWTH}x)")
    print(f"{verdict(worst >= THROUGHPUT_RATIO)} per-row overhead at {args.rounds} rounds: throughput >= {THROUGHPUT_RATIO}x the bare loop at every size (lowest {worst:.2f}x)")
    print(f"{verdict(large['resume_start_s'] <= RESUME_START_S)} resume at {large['rows']} rows with 90% done starts dispatching in {large['resume_start_s']:.2f} s (target <= {RESUME_START_S} s)")
    rate = min(r["export_rate"] for r in results)
    print(f"{verdict(rate >= EXPORT_RATE and export_memory <= MEMORY_GROWTH)} export: lowest rate {rate:.0f} trajectories/s (target >= {EXPORT_RATE:.0f}), "
          f"peak RSS x{export_memory:.2f} from {small['rows']} to {large['rows']} threads (target <= {MEMORY_GROWTH}x)")
    failures = [r for r in results if r["errors"] or r["recorded"] != r["rows"] or not r["resume_complete"]]
    if failures:
        raise SystemExit(f"incomplete runs: {[(r['rows'], r['recorded'], r['errors'], r['resume_complete']) for r in failures]}")


if __name__ == "__main__":
    main()
