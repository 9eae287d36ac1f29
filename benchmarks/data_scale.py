"""How ``data build`` grows from 10^3 to 10^4 requests, stage by stage.

For each size (1k and 10k requests by default; ``--sizes``), in a fresh process so that peak
memory is that size's own: one ``data build`` of every stage (``pipeline.build``, what the
command runs) on the scripted endpoints of the tests, in their own process
(``genevolve_graph.testing.scripted_data``: expander, teacher, auditor and visual judge,
without the scripted outages), the tiny local word embedder for the near-duplicate search,
the local search and image search of the bundled corpus, and the preview renderer.

The scripted expander writes the same few subjects again and again; here each request gets
two tag words drawn from its cell and position ("edition zq12 zq873"), so the requests are
distinct and the near-duplicate search has 10^4 texts to compare (the scripted
"Please ..." duplicate keeps its original's tags and is still found).

Printed per stage: items, wall, the stage's own batch run (the engine's session over its
items: ``StageRun.seconds``; the split has none), the rest of its wall (reading the previous
stage, the near-duplicate search, writing outputs) and its peak RSS (the kernel's high-water
mark, reset as each stage starts). Then the growth from the smallest to the largest size and
one PASS/MISS line per target of issue 25 item 6:

- every stage's peak RSS at the largest size within 1.2x that at the smallest;
- the whole build's wall within 1.5x the sum of its stages' batch runs, at every size (the
  work between and around the batch runs is not quadratic).

Run: python benchmarks/data_scale.py [--sizes 1000 10000] [--per-cell 25] [--teacher-concurrency 32]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LANGSMITH_TRACING", "false")

MEMORY_GROWTH = 1.2
GLUE_RATIO = 1.5
TAGS = [f"zq{i}" for i in range(2000)]
"""Tag words that make the scripted expander's requests distinct (in the embedder's vocabulary)."""
STAGE_ORDER = ("requests", "trajectories", "filter", "render", "visual-filter", "split")


# --------------------------------------------------------------------------- the scripted endpoints, in their own process


def tag(cell: str, index: int) -> str:
    digest = hashlib.sha256(f"{cell}:{index}".encode()).digest()
    return f"edition {TAGS[int.from_bytes(digest[:4], 'big') % len(TAGS)]} {TAGS[int.from_bytes(digest[4:8], 'big') % len(TAGS)]}"


def scale_reply(body: dict[str, Any]) -> Any:
    """The scripted endpoints without outages; the expander's requests tagged by cell and position."""
    from genevolve_graph.testing import scripted_data as sd

    reply = sd.reply(body, outages=False)
    if body.get("model") != sd.EXPANDER or not isinstance(reply, str):
        return reply
    text = sd._text(body)
    cell = json.dumps(sd._cell_fields(text), sort_keys=True)
    block = reply.split("```json\n", 1)[1].rsplit("\n```", 1)[0]
    entries = json.loads(block)["requests"]
    for index, entry in enumerate(entries):
        duplicate = entry["request"].startswith("Please ")  # the scripted near-duplicate of the first request
        entry["request"] = entry["request"].rstrip(".") + f", {tag(cell, 0 if duplicate else index)}."
    return "Here are the requests:\n```json\n" + json.dumps({"requests": entries}, indent=1) + "\n```"


def serve(conn: Any) -> None:
    """Child process: serve until told to stop. The server's request log is emptied as it
    goes (it would otherwise hold every request body of the build)."""
    from genevolve_graph.testing.scripted_openai import ScriptedChatServer

    with ScriptedChatServer(scale_reply, model="scripted-data") as server:
        conn.send(server.base_url)
        served = 0
        while not conn.poll(0.5):
            with server._lock:
                served += len(server.requests)
                errors = [r.status for r in server.requests if r.status != 200]
                server.requests.clear()
                server._attempts.clear()
            if errors:
                print(f"scripted server: {len(errors)} error replies {sorted(set(errors))}", file=sys.stderr)
        conn.recv()
        conn.send({"served": served, "cpu": time.process_time()})


# --------------------------------------------------------------------------- one size, in its own process


def recipe_text(requests: int, per_cell: int, teacher_concurrency: int) -> str:
    cells = math.ceil(requests / per_cell)
    anchors = [f"anchor{i}" for i in range(max(1, math.ceil(cells / 16)))]
    return f"""name: scale
grid:
  task_family: [poster, infographic]
  missing_evidence: [landmark_facts, none]
  visual_anchor: [{", ".join(anchors)}]
  requirement: [text, count]
  difficulty: [medium, hard]
requests_per_cell: {per_cell}
categories: {{poster: poster design, infographic: infographic}}
expander: {{base_url: "${{GENEVOLVE_DATA_BASE_URL}}", model: scripted-expander, max_retries: 0, concurrency: 8}}
dedup: {{model: "${{GENEVOLVE_DATA_EMBEDDER}}", threshold: 0.98}}
teacher:
  policy: openai
  base_url: ${{GENEVOLVE_DATA_BASE_URL}}
  model: scripted-teacher
  protocol: genevolve
  max_rounds: 6
  max_retries: 0
  retry_delay: 0.01
  search: local
  image_search: local
  concurrency: {teacher_concurrency}
filter:
  min_tool_calls: 2
  min_prompt_words: 12
  concurrency: 16
  audit:
    judge: {{base_url: "${{GENEVOLVE_DATA_BASE_URL}}", model: scripted-auditor, max_retries: 0}}
    min_reference_support: 0.5
    min_evidence_adoption: 0.5
    min_constraint_coverage: 1.0
render: {{renderer: preview, concurrency: 4}}
visual_filter:
  judge: {{base_url: "${{GENEVOLVE_DATA_BASE_URL}}", model: scripted-visual, max_retries: 0}}
  thresholds: {{prompt_consistency: 3, reference_use: 3, visual_coherence: 3, quality: 3}}
  concurrency: 16
split: {{seed: 3, gt_fraction: 0.6, bench_fraction: 0.5}}
"""


def high_water_mib() -> float:
    """The process's peak RSS since the last :func:`reset_high_water` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_high_water() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak RSS starts again from the current RSS


def measure(requests: int, per_cell: int, teacher_concurrency: int, workdir: Path, embedder: str) -> dict[str, Any]:
    from genevolve_graph.data.pipeline import BuildOptions, build
    from genevolve_graph.data.recipes import load_recipe
    from genevolve_graph.util import event_loop

    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(child,), daemon=True)
    server.start()
    try:
        base_url = conn.recv()
        os.environ["GENEVOLVE_DATA_BASE_URL"] = base_url
        os.environ["GENEVOLVE_DATA_EMBEDDER"] = embedder
        path = workdir / "scale.yaml"
        path.write_text(recipe_text(requests, per_cell, teacher_concurrency), encoding="utf-8")
        recipe = load_recipe(path)
        root = workdir / "build"
        marks: list[tuple[str, float, float]] = []  # (stage, started, peak RSS of the stage before)

        def notify(line: str) -> None:
            if line.startswith("== "):
                marks.append((line[3:], time.perf_counter(), high_water_mib()))
                reset_high_water()

        reset_high_water()
        started = time.perf_counter()
        outcomes = event_loop.run(build(recipe, root, BuildOptions(max_samples=requests, progress=False), notify=notify))
        whole = time.perf_counter() - started
        last_peak = high_water_mib()
        conn.send("stop")
        served = conn.recv()
    finally:
        server.join(timeout=20)
        if server.is_alive():
            server.terminate()
    stages = []
    for index, outcome in enumerate(outcomes):
        name, begun, _ = marks[index]
        ended = marks[index + 1][1] if index + 1 < len(marks) else started + whole
        peak = marks[index + 1][2] if index + 1 < len(marks) else last_peak
        run = outcome.run
        items = run.total if run is not None else sum(outcome.counts[k] for k in ("sft", "rl", "bench"))
        stages.append({"stage": name, "items": items, "wall": ended - begun, "batch": run.seconds if run is not None else 0.0,
                       "peak_rss_mib": peak, "complete": outcome.complete, "exit": outcome.exit_code})
    dedup = json.loads((root / "requests" / "dedup.json").read_text())
    search = time_near_duplicates(root, embedder, recipe.dedup.threshold, dedup)
    return {"requests": requests, "generated": dedup["generated"], "near_duplicates": len(dedup["dropped"]), "search_s": search,
            "whole_wall": whole, "stages": stages, "server": served, "split": json.loads((root / "split.json").read_text())}


def time_near_duplicates(root: Path, embedder: str, threshold: float, dedup: dict[str, Any]) -> float:
    """Seconds of the near-duplicate search alone (embedding included) over the build's
    generated requests, checked to find what the build found."""
    from genevolve_graph.data.dedup import load_embedder, near_duplicates

    model = load_embedder(embedder)
    texts = [row["question"] for line in (root / "requests" / "results.jsonl").read_text().splitlines() if line.strip()
             for row in json.loads(line)["requests"]]
    started = time.perf_counter()
    found = near_duplicates(texts, model, threshold)
    seconds = time.perf_counter() - started
    if len(found) != len(dedup["dropped"]):
        raise SystemExit(f"the near-duplicate search found {len(found)}, the build {len(dedup['dropped'])}")
    return seconds


def child(args: argparse.Namespace) -> None:
    result = measure(args.one, args.per_cell, args.teacher_concurrency, Path(args.workdir), args.embedder)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(*extra: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"the measuring process failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def build_embedder(directory: Path) -> None:
    from genevolve_graph.testing.scripted_data import vocabulary
    from genevolve_graph.testing.tiny_models import build_word_sentence_transformer

    build_word_sentence_transformer(vocabulary() + ["edition " + " ".join(TAGS)], directory=directory)


# --------------------------------------------------------------------------- the report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="Requests per build.")
    parser.add_argument("--per-cell", type=int, default=25, help="requests_per_cell of the generated recipe.")
    parser.add_argument("--teacher-concurrency", type=int, default=32)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--embedder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        child(args)
        return
    sizes = sorted(set(args.sizes))
    print(f"data_scale: sizes {sizes} requests, {args.per_cell} per cell, teacher concurrency {args.teacher_concurrency}; "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as shared:
        embedder = Path(shared) / "embedder"
        build_embedder(embedder)
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                row = run_child("--one", str(size), "--workdir", tmp, "--embedder", str(embedder), "--per-cell", str(args.per_cell),
                                "--teacher-concurrency", str(args.teacher_concurrency))
            results.append(row)
            batch = sum(s["batch"] for s in row["stages"])
            print(f"{size:>6} requests ({row['generated']} generated, {row['near_duplicates']} near-duplicates found in {row['search_s']:.2f} s): "
                  f"whole build {row['whole_wall']:.1f} s, "
                  f"stages' batch runs {batch:.1f} s, ratio {row['whole_wall'] / batch:.2f}; split {json.dumps({k: row['split'][k] for k in ('sft', 'rl', 'bench')})}; "
                  f"{row['server']['served']} requests served; load {os.getloadavg()[0]:.2f}", flush=True)
            for s in row["stages"]:
                unit = "cells" if s["stage"] == "requests" else "items"
                print(f"    {s['stage']:<13} {s['items']:>6} {unit:<5}  wall {s['wall']:7.1f} s  batch run {s['batch']:7.1f} s  "
                      f"rest {s['wall'] - s['batch']:6.2f} s  peak RSS {s['peak_rss_mib']:6.0f} MiB"
                      + ("" if s["complete"] else f"  INCOMPLETE (exit {s['exit']})"), flush=True)
    small, large = results[0], results[-1]
    by_small = {s["stage"]: s for s in small["stages"]}

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    growth = []
    for s in large["stages"]:
        base = by_small.get(s["stage"])
        if base is None:
            continue
        memory = s["peak_rss_mib"] / base["peak_rss_mib"]
        per_item = (s["wall"] / max(1, s["items"])) / (base["wall"] / max(1, base["items"]))
        growth.append((s["stage"], memory, per_item, s["items"] / max(1, base["items"]), s["peak_rss_mib"] - base["peak_rss_mib"]))
    print(f"growth {small['requests']} -> {large['requests']} requests:")
    for name, memory, per_item, items, mib in growth:
        print(f"    {name:<13} items x{items:.1f}, peak RSS x{memory:.2f} ({mib:+.0f} MiB), wall per item x{per_item:.2f}")
    for name, memory, _, _, _ in growth:
        print(f"{verdict(memory <= MEMORY_GROWTH)} {name}: peak RSS x{memory:.2f} from {small['requests']} to {large['requests']} requests (target <= {MEMORY_GROWTH}x)")
    for row in results:
        batch = sum(s["batch"] for s in row["stages"])
        ratio = row["whole_wall"] / batch
        print(f"{verdict(ratio <= GLUE_RATIO)} {row['requests']} requests: whole build {row['whole_wall']:.1f} s = {ratio:.2f}x the sum of the stages' "
              f"batch runs ({batch:.1f} s; target <= {GLUE_RATIO}x)")
    incomplete = [(r["requests"], s["stage"]) for r in results for s in r["stages"] if not s["complete"]]
    if incomplete or any(len(r["stages"]) != len(STAGE_ORDER) for r in results):
        raise SystemExit(f"incomplete builds: {incomplete or [(r['requests'], len(r['stages'])) for r in results]}")


if __name__ == "__main__":
    main()
