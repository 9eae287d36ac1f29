"""Batch stage-1 throughput at benchmark scale, against the scripted policy server.

594 rows (the size of GenEvolve-Bench), 5-round trajectories (4 tool calls, then an
answer), 100 ms reply latency, 64 rows in flight, SQLite checkpointing on: the real
``arun_rollouts`` path (one event loop, one compiled graph, one AsyncSqliteSaver, durable
results.jsonl). Compared with

- the ideal: rows x rounds x latency / concurrency (target: wall <= 1.5 x ideal);
- a plain thread-pool loop over the same server: 64 threads, each sending its rows' 5 chat
  requests with the ``openai`` client and nothing else: no tools, no checkpoints, no
  records (target: batch throughput >= 0.8 x the loop's);
- LangGraph's own floor: a graph of the batch's shape (planner, tools, binder, emitter) whose
  planner sends the same chat requests with the async ``openai`` client and whose other
  nodes do nothing, on LangGraph's in-memory saver. It shows how much of the gap to the loop
  is the framework's supersteps (about three per row beside the rounds) and how much is ours.

The batch runs on the event loop the command line uses (``genevolve_graph.util.event_loop``:
uvloop where installed).

Also reported: peak memory of the batch (``ru_maxrss`` of this process, measured before
the thread-pool loop runs) and checkpoint bytes per row.

The scripted server runs in a separate process (``--server thread`` puts it in this one):
on a small shared machine its request handling would otherwise compete with the batch for
the interpreter lock and the batch would be charged for the server's CPU.

Run: python benchmarks/batch_throughput.py [--rows 594] [--rounds 5] [--latency-ms 100] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import operator
import multiprocessing
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANGSMITH_TRACING", "false")

from genevolve_graph.util import event_loop  # noqa: E402

SKILLS = ["spatial_layout", "text_rendering", "quantity_counting", "aesthetic_drawing"]


def request(i: int | str) -> str:
    return f"benchmark request {i}: a travel poster of the Eiffel Tower at dusk, title \"PARIS\""


def trajectory(i: int, rounds: int) -> list[str]:
    replies = []
    for k in range(rounds - 1):
        if k % 3 == 0:
            call = {"name": "query_knowledge", "arguments": {"skill_name": SKILLS[(i + k) % len(SKILLS)]}}
        elif k % 3 == 1:
            call = {"name": "search", "arguments": {"queries": [f"Eiffel Tower fact {i}-{k}"], "top_k": 3}}
        else:
            call = {"name": "image_search", "arguments": {"query": "Eiffel Tower at dusk", "top_k": 2}}
        replies.append(f"<think>step {k} of row {i}</think>\n<tool_call>{json.dumps(call)}</tool_call>")
    answer = {"gen_prompt": "A travel poster with the tower from the first reference image at dusk, title \"PARIS\".",
              "reference_images": [{"img_id": "IMG_001", "note": "the tower's lattice"}]}
    replies.append(f"<think>done</think>\n<answer>{json.dumps(answer)}</answer>")
    return replies


def script(rows: int, rounds: int) -> dict[str, list[str]]:
    table = {request(i): trajectory(i, rounds) for i in range(rows)}
    table.update({request(f"warm-{i}"): trajectory(i, rounds) for i in range(8)})
    table.update({request(f"loop-{i}"): trajectory(i, rounds) for i in range(rows)})
    table.update({request(f"floor-{i}"): trajectory(i, rounds) for i in range(rows)})
    return table


# --------------------------------------------------------------------------- the server


def serve(rows: int, rounds: int, latency: float, conn: Any) -> None:
    """Child process: run the scripted server until told to stop, then report its counters."""
    from genevolve_graph.testing.scripted_openai import ScriptedChatServer

    with ScriptedChatServer(script(rows, rounds), latency=latency) as server:
        conn.send(server.base_url)
        while True:
            message = conn.recv()
            if message == "reset":
                with server._lock:
                    server.max_in_flight = server.in_flight
                    server.requests.clear()
                conn.send("ok")
            elif message == "stats":
                conn.send({"max_in_flight": server.max_in_flight, "requests": len(server.requests),
                           "errors": sum(1 for r in server.requests if r.status != 200), "cpu": time.process_time()})
            else:
                break


class ServerHandle:
    def __init__(self, rows: int, rounds: int, latency: float, mode: str) -> None:
        self.mode = mode
        if mode == "process":
            ctx = multiprocessing.get_context("spawn")
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=serve, args=(rows, rounds, latency, child), daemon=True)
            self.proc.start()
            self.base_url = self.conn.recv()
        else:
            from genevolve_graph.testing.scripted_openai import ScriptedChatServer

            self.server = ScriptedChatServer(script(rows, rounds), latency=latency).__enter__()
            self.base_url = self.server.base_url

    def reset(self) -> None:
        if self.mode == "process":
            self.conn.send("reset")
            self.conn.recv()
        else:
            self.server.max_in_flight = self.server.in_flight
            self.server.requests.clear()

    def stats(self) -> dict[str, int]:
        if self.mode == "process":
            self.conn.send("stats")
            return self.conn.recv()
        return {"max_in_flight": self.server.max_in_flight, "requests": len(self.server.requests),
                "errors": sum(1 for r in self.server.requests if r.status != 200), "cpu": float("nan")}

    def close(self) -> None:
        if self.mode == "process":
            self.conn.send("stop")
            self.proc.join(timeout=10)
        else:
            self.server.__exit__(None, None, None)


# --------------------------------------------------------------------------- the two contenders


async def run_batch(base_url: str, rows: int, rounds: int, concurrency: int, workdir: Path, checkpoint: str,
                    workers: int) -> tuple[float, float, Any]:
    from genevolve_graph.batch.rollouts import RolloutOptions, arun_rollouts
    from genevolve_graph.batch.rows import read_rows
    from genevolve_graph.core.context import AgentContext

    ctx = AgentContext(policy="openai", base_url=base_url, model="bench", max_rounds=max(11, rounds))
    warm_input = workdir / "warm.jsonl"
    warm_input.write_text("".join(json.dumps({"id": f"w{i}", "question": request(f"warm-{i}")}) + "\n" for i in range(8)))
    await arun_rollouts(read_rows(warm_input), ctx, RolloutOptions(out_dir=workdir / "warm", concurrency=8, progress=False))
    path = workdir / "input.jsonl"
    path.write_text("".join(json.dumps({"id": i, "question": request(i), "category": "bench"}) + "\n" for i in range(rows)))
    batch_rows = read_rows(path)
    start, cpu = time.perf_counter(), _cpu()
    options = RolloutOptions(out_dir=workdir / "run", concurrency=concurrency, progress=False, workers=workers,
                             checkpoint=None if checkpoint == "sqlite" else checkpoint)
    report = await arun_rollouts(batch_rows, ctx, options)
    wall = time.perf_counter() - start
    return wall, _cpu() - cpu, report


def _cpu() -> float:
    """CPU seconds of this process and of its finished worker processes (the server process
    is still running, so it is not counted)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_thread_pool(base_url: str, rows: int, rounds: int, threads: int) -> float:
    """The plain loop: threads x (rounds chat requests per row), nothing else."""
    import openai

    from genevolve_graph.prompts import system_prompt

    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=120)
    system = system_prompt(protocol="genevolve", max_tool_calls=10, max_rounds=11, max_refs=2)

    def one(i: int) -> None:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": request(f"loop-{i}")}]
        for _ in range(rounds):
            reply = client.chat.completions.create(model="bench", messages=messages, temperature=0.6, top_p=0.9, max_tokens=4096)
            messages.append({"role": "assistant", "content": reply.choices[0].message.content})
            messages.append({"role": "user", "content": "<tool_response>\nok\n</tool_response>"})

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(rows)))
    return time.perf_counter() - start


class FloorState(TypedDict):
    """The floor graph's state: the chat so far and the rounds done."""

    messages: Annotated[list, operator.add]
    rounds: int


async def run_langgraph_floor(base_url: str, rows: int, rounds: int, concurrency: int) -> float:
    """LangGraph's own floor for the same trajectories: a graph of the batch's shape (a
    planner that sends the chat request with the ``openai`` async client, a tools node, a
    binder and an emitter, each doing nothing else), LangGraph's in-memory saver, the same
    durability (``async``) and concurrency. What the framework costs per row before any of
    our nodes' work, checkpoint database or records: the batch can approach this, not pass it."""
    import openai
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    from genevolve_graph.prompts import system_prompt

    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=120)
    system = system_prompt(protocol="genevolve", max_tool_calls=10, max_rounds=11, max_refs=2)

    async def planner(state: FloorState) -> dict[str, Any]:
        reply = await client.chat.completions.create(model="bench", messages=state["messages"], temperature=0.6, top_p=0.9, max_tokens=4096)
        return {"messages": [{"role": "assistant", "content": reply.choices[0].message.content}], "rounds": state["rounds"] + 1}

    async def tools(state: FloorState) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": "<tool_response>\nok\n</tool_response>"}]}

    async def passthrough(state: FloorState) -> dict[str, Any]:
        return {"rounds": state["rounds"]}

    builder = StateGraph(FloorState)
    builder.add_node("planner", planner)
    builder.add_node("tools", tools)
    builder.add_node("binder", passthrough)
    builder.add_node("emitter", passthrough)
    builder.add_edge(START, "planner")
    builder.add_conditional_edges("planner", lambda s: "tools" if s["rounds"] < rounds else "binder", ["tools", "binder"])
    builder.add_edge("tools", "planner")
    builder.add_edge("binder", "emitter")
    builder.add_edge("emitter", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": request(f"floor-{i}")}]
            await graph.ainvoke({"messages": messages, "rounds": 0}, {"configurable": {"thread_id": f"floor-{i}"}}, durability="async")

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(rows)))
    wall = time.perf_counter() - start
    await client.close()
    return wall


def checkpoint_bytes(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        (ck,) = conn.execute("select coalesce(sum(length(checkpoint)) + sum(length(metadata)), 0) from checkpoints").fetchone()
        (wr,) = conn.execute("select coalesce(sum(length(value)), 0) from writes").fetchone()
    return ck, wr, db.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=594)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--server", choices=["process", "thread"], default="process")
    parser.add_argument("--workers", type=int, default=1, help="batch worker processes (RolloutOptions.workers, --workers of the command)")
    parser.add_argument("--checkpoint", default="sqlite", help="sqlite (the run folder's trace.sqlite, as the command uses) or any checkpoint URL, e.g. memory")
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    server = ServerHandle(args.rows, args.rounds, latency, args.server)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            server_start_stats = server.stats()
            wall, cpu, report = event_loop.run(run_batch(server.base_url, args.rows, args.rounds, args.concurrency, workdir, args.checkpoint,
                                                      args.workers))
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            worker_peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if args.workers > 1 else 0
            batch_stats = server.stats()
            db = workdir / "run" / "trace.sqlite"
            ck, wr, file_size = checkpoint_bytes(db) if db.exists() else (0, 0, 0)
            results_size = (workdir / "run" / "results.jsonl").stat().st_size
            server_cpu_start = server_start_stats["cpu"]
            counts = report.outcome_counts()
            assert report.complete and counts.get("answer") == args.rows, counts
            server.reset()
            loop_cpu = time.process_time()
            loop_wall = run_thread_pool(server.base_url, args.rows, args.rounds, args.concurrency)
            loop_cpu = time.process_time() - loop_cpu
            loop_stats = server.stats()
            server.reset()
            floor_cpu = time.process_time()
            floor_wall = event_loop.run(run_langgraph_floor(server.base_url, args.rows, args.rounds, args.concurrency))
            floor_cpu = time.process_time() - floor_cpu
    finally:
        server.close()
    ideal = args.rows * args.rounds * latency / args.concurrency
    waves = math.ceil(args.rows / args.concurrency) * args.rounds * latency
    ratio = wall / ideal
    speed, loop_speed = args.rows / wall, args.rows / loop_wall
    print(f"rows {args.rows} x {args.rounds} rounds, {args.latency_ms:.0f} ms latency, concurrency {args.concurrency}, "
          f"SQLite checkpoints, server in a {'separate process' if args.server == 'process' else 'thread of this process'}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"batch wall: {wall:.2f} s   ideal: {ideal:.2f} s   ratio: {ratio:.2f} (target <= 1.5; "
          f"whole waves would need {waves:.2f} s = {waves / ideal:.2f} x ideal)")
    print(f"batch CPU time (all its threads and worker processes): {cpu:.2f} s = {cpu / (args.rows * args.rounds) * 1000:.2f} ms per round")
    print(f"thread-pool loop CPU time: {loop_cpu:.2f} s = {loop_cpu / (args.rows * args.rounds) * 1000:.2f} ms per round")
    print(f"thread-pool loop wall: {loop_wall:.2f} s   throughput: batch {speed:.1f} rows/s vs loop {loop_speed:.1f} rows/s "
          f"= {speed / loop_speed:.2f} x (target >= 0.8)")
    floor_speed = args.rows / floor_wall
    print(f"LangGraph's floor (the batch's graph shape, no-op nodes, in-memory saver): wall {floor_wall:.2f} s, "
          f"CPU {floor_cpu / (args.rows * args.rounds) * 1000:.2f} ms per round, {floor_speed:.1f} rows/s = {floor_speed / loop_speed:.2f} x the loop; "
          f"the batch is {speed / floor_speed:.2f} x this floor")
    print(f"server max in flight: batch {batch_stats['max_in_flight']}, loop {loop_stats['max_in_flight']}; "
          f"requests: batch {batch_stats['requests']} ({batch_stats['errors']} errors; {8 * args.rounds} of them the 8 warm-up rows), "
          f"loop {loop_stats['requests']}")
    server_cpu = batch_stats["cpu"] - server_cpu_start
    print(f"the scripted server's own CPU during the batch: {server_cpu:.2f} s = {server_cpu / max(1, batch_stats['requests']) * 1000:.2f} ms "
          f"per request; with the batch's, {(server_cpu + cpu) / os.cpu_count():.2f} s of wall on {os.cpu_count()} fully used cores "
          f"= {(server_cpu + cpu) / os.cpu_count() / ideal:.2f} x ideal (the machine's floor for this run)")
    print(f"peak memory of the batch (ru_maxrss): {peak_kib / 1024:.0f} MiB"
          + (f" in the parent, {worker_peak_kib / 1024:.0f} MiB in the largest worker process" if args.workers > 1 else ""))
    print(f"checkpoint bytes per row: {(ck + wr) / args.rows:.0f} ({ck / args.rows:.0f} checkpoints + {wr / args.rows:.0f} writes); "
          f"trace.sqlite {file_size / args.rows:.0f} bytes per row; results.jsonl {results_size / args.rows:.0f} bytes per row")
    print(f"event loop: {event_loop.loop_kind()}")
    ok = ratio <= 1.5 and speed >= 0.8 * loop_speed
    print("PASS" if ok else "MISS")


if __name__ == "__main__":
    main()
