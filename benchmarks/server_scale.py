"""``batch --server`` at scale against ``langgraph dev``, beside the local executor on the same machine.

Starts the scripted policy server (``batch_throughput.py``'s, in its own process: short
trajectories, fixed latency) and ``langgraph dev`` on this checkout's ``langgraph.json``
(in memory; ``--n-jobs-per-worker`` set to the concurrency, since the dev server runs one
background run at a time by default), then runs the real command line, each in a fresh
process so that its peak memory is its own:

1. ``batch --server`` over the first ``--rows // 10`` rows (the memory baseline);
2. ``batch --server`` over ``--rows`` rows (default 2,000);
3. ``batch`` with the local executor (SQLite checkpoints) over the same ``--rows`` rows.

Printed per run: rows/s (the stage's own rate, from its summary line: start-up excluded),
the command's wall time, the client's peak RSS (``wait4`` of that process), and the dev
server's peak RSS; then PASS/MISS for

- completes: every run exits 0 and records every row exactly once, each with an answer;
- client memory bounded: the client's peak RSS at ``--rows`` within 1.2x that at ``--rows // 10``.

Run: python benchmarks/server_scale.py [--rows 2000] [--rounds 2] [--latency-ms 20] [--concurrency 64] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
RATE = re.compile(r"this session: (\d+) rows in .*? \(([\d.]+) rows/s\)")


def write_input(path: Path, rows: int) -> Path:
    import batch_throughput as bt

    path.write_text("".join(json.dumps({"id": i, "question": bt.request(i), "category": "bench"}) + "\n" for i in range(rows)))
    return path


def client_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", LANGSMITH_TRACING="false", PYTHONUNBUFFERED="1")
    return env


def run_batch(label: str, input_path: Path, out: Path, policy_url: str, concurrency: int, server: str | None,
              timeout: float) -> dict[str, Any]:
    """The ``batch`` command in a fresh process: its exit code, wall, peak RSS and stage rate."""
    command = [sys.executable, "-m", "genevolve_graph.cli", "batch", "--input", str(input_path), "--out", str(out),
               "--policy", "openai", "--base-url", policy_url, "--model", "bench", "--concurrency", str(concurrency),
               "--no-progress", "--no-preflight"]
    if server:
        command += ["--server", server]
    log = out.with_suffix(".log")
    started = time.perf_counter()
    with log.open("w") as stream:
        proc = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT, env=client_env())
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    text = log.read_text()
    rate = RATE.search(text)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()] \
        if (out / "results.jsonl").exists() else []
    return {
        "label": label, "exit": proc.returncode, "wall_s": wall, "client_peak_rss_mib": usage.ru_maxrss / 1024,
        "rows_per_s": float(rate.group(2)) if rate else float("nan"), "session_rows": int(rate.group(1)) if rate else 0,
        "recorded": len(records), "distinct": len({r["id"] for r in records}),
        "answers": sum(1 for r in records if r.get("termination") == "answer"),
        "log_tail": "" if proc.returncode == 0 else text[-2000:],
    }


def process_tree_hwm_mib(pid: int) -> float:
    """Peak RSS (VmHWM) of a process and its children, summed (Linux ``/proc``)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (OSError, AttributeError):
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=None, help="the dev server's --n-jobs-per-worker (default: --concurrency)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one batch command may take")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (printed)")
    args = parser.parse_args()

    import batch_throughput as bt

    from genevolve_graph.testing.langgraph_dev import dev_env, langgraph_dev, server_folder

    small = max(1, args.rows // 10)
    workdir = Path(tempfile.mkdtemp(prefix="server-scale-"))
    load_before = os.getloadavg()
    policy = bt.ServerHandle(args.rows, args.rounds, args.latency_ms / 1000, "process")
    results: list[dict[str, Any]] = []
    try:
        env = dev_env(workdir, policy.base_url)
        with langgraph_dev(server_folder(workdir / "server"), workdir / "dev.log", env, jobs=args.jobs or args.concurrency,
                           timeout=120) as server:
            for label, rows in ((f"server {small}", small), (f"server {args.rows}", args.rows)):
                input_path = write_input(workdir / f"in-{rows}.jsonl", rows)
                results.append(run_batch(label, input_path, workdir / label.replace(" ", "-"), policy.base_url, args.concurrency,
                                         server.url, args.timeout))
            server_rss = process_tree_hwm_mib(server.process.pid)
        results.append(run_batch(f"local {args.rows}", workdir / f"in-{args.rows}.jsonl", workdir / f"local-{args.rows}",
                                 policy.base_url, args.concurrency, None, args.timeout))
        policy_stats = policy.stats()
    finally:
        policy.close()
    load_after = os.getloadavg()

    print(f"rows {args.rows} (baseline {small}), {args.rounds} rounds, {args.latency_ms:g} ms latency, concurrency {args.concurrency}, "
          f"dev server jobs {args.jobs or args.concurrency}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'run':>14} {'exit':>4} {'rows/s':>8} {'wall s':>8} {'client MiB':>10} {'recorded':>9}")
    for r in results:
        print(f"{r['label']:>14} {r['exit']:>4} {r['rows_per_s']:>8.2f} {r['wall_s']:>8.1f} {r['client_peak_rss_mib']:>10.1f} "
              f"{r['recorded']:>5}/{r['distinct']}")
        if r["log_tail"]:
            print(r["log_tail"])
    print(f"dev server peak RSS (process tree): {server_rss:.0f} MiB; policy server: {policy_stats['requests']} requests, "
          f"{policy_stats['errors']} errors")
    server_small, server_large, local = results
    ratio = server_large["rows_per_s"] / local["rows_per_s"] if local["rows_per_s"] else float("nan")
    print(f"server / local rows/s: {ratio:.2f}x")
    expected = {server_small["label"]: small, server_large["label"]: args.rows, local["label"]: args.rows}
    complete = all(r["exit"] == 0 and r["recorded"] == r["distinct"] == r["answers"] == expected[r["label"]] for r in results)
    growth = server_large["client_peak_rss_mib"] / server_small["client_peak_rss_mib"]
    print(f"{'PASS' if complete else 'MISS'} completes: every run exits 0 and records each row once, with an answer")
    print(f"{'PASS' if growth <= MEMORY_GROWTH else 'MISS'} client memory bounded: peak RSS at {args.rows} rows is {growth:.2f}x "
          f"that at {small} (target <= {MEMORY_GROWTH}x)")
    if args.keep:
        print(f"working folder: {workdir}")
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
