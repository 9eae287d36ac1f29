"""Image-search concurrency: 64 trajectories, each calling image_search for 5 results,
against a local image host that delays every image by 50 ms.

Reports the wall time against the ideal under the download concurrency bound
(``ceil(unique images / bound) x delay``; target at most 1.3x) and checks, from the image
host's own request log, that no image was downloaded twice. Neighbouring queries share
images, so the once-per-URL rule is exercised. Next to it: a floor (plain pooled aiohttp
GETs of as many images under the same bound, the library the downloader uses) measured
in the same minute, and, when the target is missed or with ``--breakdown``, one
instrumented run that shows where the time between the ideal and the wall went.

Two modes:
  direct  64 concurrent callers of the Serper backend's ``search_images(query, 5)``.
  graph   64 trajectories through ``build_graph`` with the rules policy and the Serper
          backends (the rules policy asks image_search for min(top_k, 3) results per subject).

The search API and the image host run in a separate process (real HTTP on 127.0.0.1), so
the servers do not share this process's interpreter lock.

    PYTHONPATH=. python benchmarks/search_concurrency.py [--mode direct|graph|both] [--bound 16] [--breakdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SERPER_KEY = "bench-serper-key"
SHARED = 2  # images each query shares with the next one


def _image_urls(image_base: str, query: str, n: int) -> list[str]:
    """``n`` candidates (twice top_k) for the query's topic number; neighbouring topics
    share ``SHARED`` of the top_k images that get downloaded."""
    digits = re.findall(r"\d+", query)
    topic = int(digits[-1]) if digits else abs(hash(query)) % 1000
    stride = max(1, n // 2 - SHARED)
    return [f"{image_base}/img/b{stride * topic + j}" for j in range(n)]


def _serve_images(delay: float, conn: Any) -> None:
    """Child process: the image host, until the parent says stop."""
    from genevolve_graph.testing.server_thread import ServerThread
    from genevolve_graph.testing.search_servers import ImageHostState, image_host_app

    images = ServerThread(image_host_app(ImageHostState(delay=delay))).start()
    conn.send((images.url, images.port))
    conn.recv()
    images.stop()


def _serve_search(image_url: str, conn: Any) -> None:
    """Child process: the Serper-compatible API, until the parent says stop."""
    from functools import partial

    from genevolve_graph.testing.server_thread import ServerThread
    from genevolve_graph.testing.search_servers import SearchState, search_app

    state = SearchState(serper_key=SERPER_KEY, image_base=image_url, image_results_fn=partial(_image_urls, image_url))
    search = ServerThread(search_app(state)).start()
    conn.send(search.url)
    conn.recv()
    search.stop()


def _stats(image_url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{image_url}/_stats", timeout=10) as response:
        return json.loads(response.read())


def _options(image_port: int, bound: int, directory: str) -> dict[str, Any]:
    return {
        "image_download_dir": directory,
        "allow_hosts": [f"127.0.0.1:{image_port}"],
        "download_concurrency": bound,
    }


def warm_up() -> None:
    """Pay one-time process costs before timing, as a long-running batch would have:
    module imports, Pillow's format plugins, the TLS context."""
    from genevolve_graph.safety.imaging import decode_image_bytes
    from genevolve_graph.testing.search_servers import image_bytes
    from genevolve_graph.net.webclient import ssl_context

    ssl_context()
    for fmt in ("jpeg", "png", "webp", "gif"):
        decode_image_bytes(image_bytes("warm-up", fmt, (8, 8)), max_pixels=10**6, max_bytes=10**6)


async def _direct(
    search_url: str, image_port: int, n: int, top_k: int, bound: int, directory: str, cpu: dict[str, float] | None = None
) -> tuple[float, int]:
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.tools.registry import make_image_search_backend

    backend = make_image_search_backend(AgentContext(image_search="serper", options=_options(image_port, bound, directory)))
    warm_up()
    started, loop_cpu, all_cpu = time.perf_counter(), time.thread_time(), time.process_time()
    outcomes = await asyncio.gather(*(backend.search_images(f"landmark {i}", top_k) for i in range(n)))
    wall = time.perf_counter() - started
    if cpu is not None:
        cpu["loop"] = time.thread_time() - loop_cpu
        cpu["threads"] = time.process_time() - all_cpu - cpu["loop"]
    bad = [o for o in outcomes if len(o.hits) != top_k or o.rejected]
    if bad:
        raise SystemExit(f"{len(bad)} callers did not get {top_k} images: {bad[0]}")
    return wall, sum(len(o.hits) for o in outcomes)


async def _floor(image_url: str, count: int, bound: int) -> float:
    """Plain pooled aiohttp GETs of ``count`` images under the same bound: no search, no
    checks, no decoding, no cache. What this machine and server allow at best."""
    import aiohttp

    semaphore = asyncio.Semaphore(bound)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=bound)) as client:

        async def one(i: int) -> None:
            async with semaphore:
                async with client.get(f"{image_url}/img/floor{i}") as response:
                    response.raise_for_status()
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - started


def floor(count: int, bound: int, delay: float) -> float:
    fork = mp.get_context("fork")
    conn, child = fork.Pipe()
    process = fork.Process(target=_serve_images, args=(delay, child), daemon=True)
    process.start()
    try:
        image_url, _ = conn.recv()
        return asyncio.run(_floor(image_url, count, bound))
    finally:
        conn.send("stop")
        process.join(timeout=10)


def _skills_dir(root: Path) -> str:
    """Guides for the rules policy (the bundled ones are used when present)."""
    from genevolve_graph.core.protocol import SKILL_NAMES

    directory = root / "skills"
    directory.mkdir(exist_ok=True)
    for name in SKILL_NAMES:
        (directory / f"{name}.md").write_text(
            f"---\nname: {name}\nsummary: benchmark guide\ntriggers: [{name}]\n---\n## Constraints to write into the prompt\n- keep it right\n",
            encoding="utf-8",
        )
    return str(directory)


async def _graph(search_url: str, image_port: int, n: int, top_k: int, bound: int, directory: str) -> tuple[float, int]:
    from langgraph.checkpoint.memory import InMemorySaver

    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.agent.graph import build_graph, recursion_limit

    try:
        from genevolve_graph.skills import load_skills

        load_skills("")
        skills = ""
    except Exception:  # noqa: BLE001 - bundled guides not in this checkout
        skills = _skills_dir(Path(directory).parent)
    ctx = AgentContext(
        policy="rules", search="serper", image_search="serper", renderer="none", top_k=top_k, skills_dir=skills,
        options=_options(image_port, bound, directory),
    )
    graph = build_graph(InMemorySaver())
    warm_up()
    configs = [{"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": recursion_limit(ctx), "max_concurrency": n} for _ in range(n)]
    inputs = [{"request": f"A photo of Landmark{i} at dusk"} for i in range(n)]  # one named subject each
    started = time.perf_counter()
    results = await graph.abatch(inputs, configs, context=ctx)
    wall = time.perf_counter() - started
    images = 0
    for result in results:
        if result.get("termination") != "answer":
            raise SystemExit(f"a trajectory ended with {result.get('termination')}: {result.get('error')}")
        images += sum(len(re.findall(r"^IMG_\d+: title:", str(m.content), re.M)) for m in result["messages"] if getattr(m, "type", "") == "tool")
    return wall, images


class Timeline:
    """Where one direct run's time goes: the search API calls, each download (the network
    part, inside the bound) and each decode-and-store (off the event loop). Wraps the three
    methods for the length of one run; the timed runs above are not instrumented."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, float]] = []
        self.cpu: dict[str, float] = {}

    def __enter__(self) -> "Timeline":
        from genevolve_graph.tools.download import ImageDownloader
        from genevolve_graph.tools.serper import SerperBackend

        events = self.events

        def timed_async(kind: str, method: Any) -> Any:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await method(*args, **kwargs)
                finally:
                    events.append((kind, start, time.perf_counter()))

            return wrapper

        def timed(kind: str, method: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    events.append((kind, start, time.perf_counter()))

            return wrapper

        self._saved = [
            (SerperBackend, "_image_candidates", SerperBackend._image_candidates),
            (ImageDownloader, "_download", ImageDownloader._download),
            (ImageDownloader, "_accept", ImageDownloader._accept),
        ]
        SerperBackend._image_candidates = timed_async("search", SerperBackend._image_candidates)  # type: ignore[method-assign]
        ImageDownloader._download = timed_async("download", ImageDownloader._download)  # type: ignore[method-assign]
        ImageDownloader._accept = timed("accept", ImageDownloader._accept)  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, name, method in self._saved:
            setattr(owner, name, method)

    def report(self, wall: float, ideal: float, bound: int, delay: float) -> str:
        def of(kind: str) -> list[tuple[float, float]]:
            return sorted((a, b) for k, a, b in self.events if k == kind)

        searches, downloads, accepts = of("search"), of("download"), of("accept")
        if not downloads:
            return "       breakdown: no downloads were timed"
        t0 = min(a for a, _ in searches + downloads)
        first, last = downloads[0][0] - t0, max(b for _, b in downloads) - t0
        span = last - first
        busy = sum(b - a for a, b in downloads)
        durations = sorted(b - a for a, b in downloads)
        rounds = math.ceil(len(downloads) / bound)
        end = max(b for _, b in downloads + accepts) - t0
        decode = sorted(b - a for a, b in accepts)
        lines = [
            f"       breakdown (one instrumented run, wall {end:.3f}s against ideal {ideal:.3f}s):",
            f"         before the first download: {first:.3f}s (search API: {len(searches)} calls, all answered by "
            f"{max(b for _, b in searches) - t0:.3f}s, median {_median([b - a for a, b in searches]) * 1000:.0f} ms each)",
            f"         downloads: {span:.3f}s for {rounds} rounds of {delay * 1000:.0f} ms = {span / rounds * 1000:.1f} ms a round; "
            f"median download {durations[len(durations) // 2] * 1000:.1f} ms ({(durations[len(durations) // 2] - delay) * 1000:.1f} ms "
            f"above the server's delay), {busy / span:.1f} of {bound} slots busy on average",
            f"         after the last download: {end - last:.3f}s (its decode and store; median decode+store "
            f"{decode[len(decode) // 2] * 1000:.1f} ms in a worker thread, outside the bound)",
            f"         client CPU: event loop {self.cpu.get('loop', 0):.3f}s, worker threads {self.cpu.get('threads', 0):.3f}s; "
            f"machine load {os.getloadavg()[0]:.2f} (the two servers share the machine's {os.cpu_count()} cores)",
        ]
        return "\n".join(lines)


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0


def run(mode: str, n: int, top_k: int, bound: int, delay: float, timeline: Timeline | None = None) -> dict[str, Any]:
    from genevolve_graph.tools.runcache import RUN_CACHE

    fork = mp.get_context("fork")
    image_conn, image_child = fork.Pipe()
    search_conn, search_child = fork.Pipe()
    image_server = fork.Process(target=_serve_images, args=(delay, image_child), daemon=True)
    image_server.start()
    image_url, image_port = image_conn.recv()
    search_server = fork.Process(target=_serve_search, args=(image_url, search_child), daemon=True)
    search_server.start()
    servers = [(image_server, image_conn), (search_server, search_conn)]
    try:
        search_url = search_conn.recv()
        os.environ["SERPER_API_KEY"] = SERPER_KEY
        os.environ["SERPER_BASE_URL"] = f"{search_url}/serper"
        RUN_CACHE.clear()
        with tempfile.TemporaryDirectory() as tmp:
            directory = str(Path(tmp) / "images")
            if mode == "direct":
                coroutine = _direct(search_url, image_port, n, top_k, bound, directory, timeline.cpu if timeline else None)
            else:
                coroutine = _graph(search_url, image_port, n, top_k, bound, directory)
            if timeline is not None:
                with timeline:
                    wall, images_returned = asyncio.run(coroutine)
            else:
                wall, images_returned = asyncio.run(coroutine)
            stats = _stats(image_url)
            stored = sum(1 for p in Path(directory).rglob("*") if p.is_file() and p.parent.name != "urls")
    finally:
        for process, conn in servers:
            conn.send("stop")
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    fetched = {path: count for path, count in stats.items() if path.startswith("/img/")}
    unique = len(fetched)
    twice = {path: count for path, count in fetched.items() if count > 1}
    ideal = math.ceil(unique / bound) * delay
    return {
        "mode": mode, "trajectories": n, "top_k": top_k, "bound": bound, "delay_s": delay,
        "images_returned": images_returned, "unique_images": unique, "requests_to_image_host": sum(fetched.values()),
        "stored_files": stored, "downloaded_twice": len(twice), "wall_s": round(wall, 3), "ideal_s": round(ideal, 3),
        "ratio": round(wall / ideal, 3) if ideal else None, "target": 1.3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["direct", "graph", "both"], default="both")
    parser.add_argument("--trajectories", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--bound", type=int, default=16, help="download concurrency bound (options['download_concurrency'])")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds the image host waits before each image")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode; the median is reported")
    parser.add_argument("--breakdown", action="store_true", help="always add the instrumented run (direct mode), not only when the target is missed")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    modes = ["direct", "graph"] if args.mode == "both" else [args.mode]
    report = []
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (timings need an otherwise idle machine)")

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    for mode in modes:
        # Runs alternate with their reference (the plain-aiohttp floor, or the graph without
        # the delay) so that both see the same machine load.
        runs, refs = [], []
        for _ in range(args.repeat):
            runs.append(run(mode, args.trajectories, args.top_k, args.bound, args.delay))
            if mode == "direct":
                refs.append(floor(runs[-1]["unique_images"], args.bound, args.delay))
            else:
                refs.append(run(mode, args.trajectories, args.top_k, args.bound, 0.0)["wall_s"])
        m = dict(runs[0])
        walls = [r["wall_s"] for r in runs]
        m.update(wall_s=round(median(walls), 3), wall_s_all=walls, ref_s_all=[round(x, 3) for x in refs],
                 downloaded_twice=max(r["downloaded_twice"] for r in runs), ratio=round(median(walls) / m["ideal_s"], 3))
        head = (
            f"{mode:6s} {args.trajectories} trajectories: {m['images_returned']} images returned, {m['unique_images']} unique, "
            f"{m['requests_to_image_host']} image requests, {m['downloaded_twice']} downloaded twice | "
            f"bound {args.bound}, delay {args.delay * 1000:.0f} ms, ideal {m['ideal_s']:.3f}s"
        )
        if mode == "direct":
            ok = m["ratio"] <= m["target"] and m["downloaded_twice"] == 0
            m["floor_s"] = round(median(refs), 3)
            m["vs_floor"] = round(median([w / f for w, f in zip(walls, refs)]), 3)
            print(
                f"{head}\n       wall {m['wall_s']:.3f}s (runs {walls}) = {m['ratio']:.2f}x ideal (target <= {m['target']}x) "
                f"{'OK' if ok else 'MISSED'}\n       plain-aiohttp floor, same load: {m['floor_s']:.3f}s (runs {m['ref_s_all']}) = "
                f"{m['floor_s'] / m['ideal_s']:.2f}x ideal; search + safety + cache cost {m['vs_floor']:.2f}x the floor (median of pairs)"
            )
            if args.breakdown or not ok:
                timeline = Timeline()
                traced = run(mode, args.trajectories, args.top_k, args.bound, args.delay, timeline)
                print(timeline.report(traced["wall_s"], m["ideal_s"], args.bound, args.delay))
        else:
            # The graph's own work (policy turns, checkpoints, searches) dwarfs 50 ms waits;
            # the same run without the delay isolates what waiting for images added.
            added = [w - r for w, r in zip(walls, refs)]
            m["wall_s_no_delay"], m["added_s"] = round(median(refs), 3), round(median(added), 3)
            m["added_ratio"] = round(m["added_s"] / m["ideal_s"], 3)
            print(
                f"{head}\n       wall {m['wall_s']:.3f}s (runs {walls}); without the delay {m['wall_s_no_delay']:.3f}s "
                f"(runs {m['ref_s_all']}); waiting for images added {m['added_s']:.3f}s (median of pairs) = {m['added_ratio']:.2f}x ideal"
            )
        report.append(m)

    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
