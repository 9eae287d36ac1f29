"""Render-service memory under a flood: bounded by the queue, not by the number of clients.

A real ``serve-renderer`` process (the tiny Qwen edit pipeline, CPU) gets ``--clients``
requests at once, each with ``--refs`` references of ``--ref-mp`` megapixels (compressible
PNGs, so the bodies stay small while the decoded pixels are large). The service's resident
memory is sampled every 10 ms. Printed, all from this one run:

- how many requests were admitted (200) and refused (503), and when the last 503 came;
- the peak growth of the service's memory over its idle size, as a multiple of the decoded
  size of one request's references (admitted requests hold theirs, and decoding makes a
  transient copy), for ``--clients`` and for twice as many clients, each against a fresh
  service process, and the ratio of the two growths: admission before reading keeps it
  near 1 (memory bounded by ``--max-queue``, not by the number of clients).

    python benchmarks/service_flood.py --clients 12 --refs 4 --ref-mp 6 --max-queue 2
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def flat_png_uri(megapixels: float, shade: int) -> str:
    from PIL import Image

    from genevolve_graph.safety.imaging import to_data_uri

    side = int((megapixels * 1_000_000) ** 0.5)
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (shade, 90, 160)).save(buffer, format="PNG")
    return to_data_uri(buffer.getvalue())


def flood(pipeline_dir: Path, clients: int, refs: int, ref_mp: float, max_queue: int) -> dict[str, float]:
    """One fresh service process, one flood; returns counts, timings and memory."""
    import httpx
    import psutil

    from benchmarks.render_service import free_port, stop, wait_ready

    port = free_port()
    command = [sys.executable, "-m", "genevolve_graph.cli.serve_renderer", "serve-renderer", "--pipeline", str(pipeline_dir),
               "--device", "cpu", "--dtype", "float32", "--processor", "image-only", "--vae-image-pixels", "4096",
               "--condition-image-pixels", "3136", "--torch-threads", "1", "--port", str(port), "--max-queue", str(max_queue),
               "--max-total-reference-mp", str(refs * ref_mp + 1), "--log-level", "warning"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    body = {"image_urls": [flat_png_uri(ref_mp, 40 * i) for i in range(refs)], "prompt": "a poster",
            "num_inference_steps": 2, "true_cfg_scale": 1.0, "width": 64, "height": 64}
    answers: list[tuple[int, float]] = []
    try:
        wait_ready(process, url)
        service = psutil.Process(process.pid)
        idle = service.memory_info().rss
        peak = idle
        sampling = True

        def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, service.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()

        def post(_: int) -> None:
            reply = httpx.post(f"{url}/generate", json=body, timeout=600)
            answers.append((reply.status_code, time.monotonic() - started))

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, range(clients)))
        sampling = False
        sampler.join()
    finally:
        stop([process])
    refused = [t for status, t in answers if status == 503]
    return {"ok": sum(status == 200 for status, _ in answers), "refused": len(refused), "last_503": max(refused, default=0.0),
            "idle": idle, "growth": peak - idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--refs", type=int, default=4)
    parser.add_argument("--ref-mp", type=float, default=6.0)
    parser.add_argument("--max-queue", type=int, default=2)
    args = parser.parse_args()

    from genevolve_graph.testing.tiny_qwen_edit import build_tiny_edit_pipeline, save_tiny_pipeline

    work = Path(tempfile.mkdtemp(prefix="gg-flood-"))
    pipeline_dir = save_tiny_pipeline(build_tiny_edit_pipeline(), work / "tiny-edit")
    decoded = args.refs * args.ref_mp * 1_000_000 * 3  # RGB bytes of one request's references
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.refs} references x {args.ref_mp:g} MP "
          f"per request, --max-queue {args.max_queue} (admission bound {args.max_queue + 1})")
    results = {}
    for clients in (args.clients, 2 * args.clients):
        r = flood(pipeline_dir, clients, args.refs, args.ref_mp, args.max_queue)
        results[clients] = r
        print(f"  {clients:3d} clients: 200 x{r['ok']:.0f}, 503 x{r['refused']:.0f} (last after {r['last_503'] * 1000:.0f} ms); "
              f"memory growth {r['growth'] / 2**20:.0f} MiB = {r['growth'] / decoded:.2f} x one request's decoded references")
    a, b = results[args.clients], results[2 * args.clients]
    print(f"memory growth ratio, {2 * args.clients} vs {args.clients} clients: {b['growth'] / max(a['growth'], 1):.2f} "
          "(bounded by the queue: about 1, not 2)")


if __name__ == "__main__":
    main()
