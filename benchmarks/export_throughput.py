"""Export throughput: trajectories per second from a SQLite checkpointer of recorded threads.

N threads of R rounds (R-1 tool calls cycling query_knowledge / search / image_search, then
an answer) are recorded through the real graph and SQLite checkpointer, with an in-process
scripted policy (no HTTP: the benchmark is about reading, not recording). Then every thread
is exported to SFT records (JSONL, reference images copied) and the wall time measured:
the whole export (listing, both read passes, rendering, scrubbing, image copies, writing),
in the process that opened the database, and the same export through the command line.

Target: at least 200 trajectories per second on a 2-core machine.
Run: python benchmarks/export_throughput.py [--threads 1000] [--rounds 8] [--db PATH (reused if it holds the threads)]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from langchain_core.messages import AIMessage  # noqa: E402

from genevolve_graph import AgentContext, build_graph  # noqa: E402
from genevolve_graph.persistence import open_checkpointer, open_checkpointer_sync  # noqa: E402
from genevolve_graph.agent.runner import run_with_saver  # noqa: E402
from genevolve_graph.training.export import ExportReport, export_threads  # noqa: E402
from genevolve_graph.training.sft_data import JsonlWriter  # noqa: E402

TARGET = 200.0
SKILLS = ["text_rendering", "spatial_layout", "quantity_counting", "aesthetic_drawing"]


def replies(rounds: int, i: int) -> list[str]:
    out = []
    for r in range(rounds - 1):
        if r % 3 == 0:
            call = {"name": "query_knowledge", "arguments": {"skill_name": SKILLS[(i + r) % len(SKILLS)]}}
        elif r % 3 == 1:
            call = {"name": "search", "arguments": {"queries": [f"Eiffel Tower fact {i}-{r}"], "top_k": 3}}
        else:
            call = {"name": "image_search", "arguments": {"query": ["Eiffel Tower at dusk", "lighthouse", "red bus"][r % 3], "top_k": 2}}
        out.append(f"<think>step {r} of request {i}</think>\n<tool_call>{json.dumps(call)}</tool_call>")
    answer = {"gen_prompt": f"Poster {i}: the tower from the first reference image at dusk, title \"PARIS\".",
              "reference_images": [{"img_id": "IMG_001", "note": "tower"}]}
    out.append(f"<think>done</think>\n<answer>{json.dumps(answer)}</answer>")
    return out


class ScriptedPolicy:
    """Replies by request number and turn; the graph parses them like a served model's."""

    name = "scripted"
    model = "scripted"

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    async def respond(self, messages, ctx) -> AIMessage:
        request = str(messages[1].content)
        i = int(request.rsplit(" ", 1)[1])
        turn = sum(1 for m in messages if isinstance(m, AIMessage))
        return AIMessage(content=replies(self.rounds, i)[turn])


def thread_count(db: Path) -> int:
    if not db.is_file():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT COUNT(DISTINCT thread_id) FROM checkpoints").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


async def record(db: Path, n: int, rounds: int, concurrency: int = 16) -> float:
    ctx = AgentContext(policy="rules", renderer="none", max_rounds=max(11, rounds), experiment="bench-export")
    async with open_checkpointer(f"sqlite:///{db}") as saver:
        graph = build_graph(saver, policy=ScriptedPolicy(rounds))
        gate = asyncio.Semaphore(concurrency)
        start = time.perf_counter()

        async def one(i: int) -> None:
            async with gate:
                result = await run_with_saver(f"request {i}", ctx, saver, thread_id=f"t{i:05d}", graph=graph)
                assert result.termination == "answer" and result.rounds == rounds, (result.termination, result.error)

        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - start


def export_in_process(db: Path, out: Path) -> tuple[float, int, ExportReport]:
    report = ExportReport()
    start = time.perf_counter()
    with open_checkpointer_sync(f"sqlite:///{db}") as saver, JsonlWriter(out) as writer:
        for rec in export_threads(saver, images_dir=out.parent / "images", data_root=out.parent, report=report):
            writer.write(rec.to_json())
    return time.perf_counter() - start, writer.count, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--db", type=Path, default=None, help="SQLite file to (re)use; default: a temporary one")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="export-bench-"))
    db = args.db or work / "trace.sqlite"
    if thread_count(db) != args.threads:
        if db.exists():
            db.unlink()
        seconds = asyncio.run(record(db, args.threads, args.rounds))
        print(f"recorded {args.threads} threads of {args.rounds} rounds in {seconds:.1f} s ({db.stat().st_size / 1e6:.1f} MB)")
    else:
        print(f"reusing {db} ({args.threads} threads)")

    seconds, count, report = export_in_process(db, work / "sft.jsonl")
    assert count == args.threads, report.summary()
    first = json.loads((work / "sft.jsonl").read_text().splitlines()[0])
    assert sum(m["role"] == "assistant" for m in first["messages"]) == args.rounds
    rate = count / seconds
    print(f"export_threads -> JSONL: {count} trajectories in {seconds:.2f} s = {rate:.0f} trajectories/s "
          f"(target {TARGET:.0f}; ratio {rate / TARGET:.2f})")

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli_out = work / "cli" / "sft.jsonl"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from genevolve_graph.cli.app import app; "
                    "from genevolve_graph.cli.export import register; register(app); "
                    "app(args=sys.argv[1:], prog_name='genevolve-graph')",
                    "export", "--checkpoint", f"sqlite:///{db}", "--out", str(cli_out), "--quiet"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    cli_seconds = time.perf_counter() - start
    cli_rate = args.threads / cli_seconds
    print(f"genevolve-graph export (new process, imports included): {cli_seconds:.2f} s = {cli_rate:.0f} trajectories/s "
          f"(ratio {cli_rate / TARGET:.2f})")
    print(f"{'PASS' if rate >= TARGET else 'FAIL'}: {rate:.0f} trajectories/s in process")


if __name__ == "__main__":
    main()
