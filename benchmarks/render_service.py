"""Render service overhead and multi-process speed-up, measured with the tiny Qwen edit pipeline.

1. N renders with the tiny pipeline called directly (in this process, pre-decoded references).
2. N renders one at a time through the service renderer (our HTTP client) and one
   ``serve-renderer`` process: the per-request overhead is the difference of the medians
   (reading and encoding references, HTTP, safe decoding, queueing, the worker thread, PNG
   encoding and decoding, writing the file).
   It is also compared with the in-process diffusers renderer, which reads and decodes
   the same reference files: that difference is what the HTTP hop itself costs.
3. N renders submitted together through one, then two service processes (round-robin,
   ``--concurrency`` requests in flight per endpoint): the speed-up from the second process.

Target: overhead <= max(5% of a 2-step render, 15 ms). The tiny pipeline makes a 2-step
render cost ~0.1 s on a CPU, so this checks the fixed costs of the service path; a real
40-step render takes tens of seconds, next to which the same overhead vanishes.

Each service process is a real ``python -m genevolve_graph.cli.serve_renderer
serve-renderer`` (the command users run) with ``--torch-threads`` CPU threads; two
processes on two cores stand for two GPUs. The machine's load average is printed: other
work on a shared machine lowers the speed-up.

    python benchmarks/render_service.py --renders 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_references(directory: Path, size: tuple[int, int]) -> list[Path]:
    """Two photo-like JPEG references (noise compresses like a photo, not like a flat colour)."""
    from PIL import Image

    paths = []
    for index, tint in enumerate(((200, 120, 80), (60, 140, 200))):
        noise = Image.effect_noise(size, 60).convert("RGB")
        image = Image.blend(noise, Image.new("RGB", size, tint), 0.5)
        path = directory / f"ref{index}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def start_service(pipeline_dir: Path, threads: int, steps_limit: int = 100) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "genevolve_graph.cli.serve_renderer", "serve-renderer",
        "--pipeline", str(pipeline_dir), "--device", "cpu", "--dtype", "float32", "--processor", "image-only",
        "--vae-image-pixels", "4096", "--condition-image-pixels", "3136",
        "--torch-threads", str(threads), "--port", str(port), "--max-queue", "64", "--log-level", "warning",
        "--max-steps", str(steps_limit),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return process, f"http://127.0.0.1:{port}"


def wait_ready(process: subprocess.Popen, url: str, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited early: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).json().get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"service at {url} did not become ready in {timeout} s")


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def summarize(label: str, seconds: list[float]) -> float:
    median = statistics.median(seconds)
    spread = statistics.quantiles(seconds, n=10) if len(seconds) >= 10 else [min(seconds), max(seconds)]
    print(f"  {label:<34} median {median * 1000:8.1f} ms   mean {statistics.mean(seconds) * 1000:8.1f} ms   "
          f"p10-p90 {spread[0] * 1000:.1f}-{spread[-1] * 1000:.1f} ms   (n={len(seconds)})")
    return median


async def sequential(renderer, program, out_dir: Path, count: int, tag: str) -> list[float]:
    times = []
    for index in range(count):
        started = time.perf_counter()
        result = await renderer.render(program, out_dir / f"{tag}-{index}.png", seed=index)
        times.append(time.perf_counter() - started)
        if not result.success:
            raise RuntimeError(f"render failed: {result.error}")
    return times


async def concurrent(renderer, program, out_dir: Path, count: int, tag: str) -> float:
    started = time.perf_counter()
    results = await asyncio.gather(*(renderer.render(program, out_dir / f"{tag}-{i}.png", seed=i) for i in range(count)))
    wall = time.perf_counter() - started
    failed = [r.error for r in results if not r.success]
    if failed:
        raise RuntimeError(f"{len(failed)} renders failed: {failed[0]}")
    return wall


def png_round_trip_ms(side: int = 1024) -> float:
    """What encoding and decoding one real-sized reply costs (not part of the tiny renders)."""
    import base64

    from PIL import Image

    from genevolve_graph.safety.imaging import decode_image_bytes, encode_png

    image = Image.blend(Image.effect_noise((side, side), 40).convert("RGB"), Image.new("RGB", (side, side), (90, 120, 150)), 0.5)
    started = time.perf_counter()
    for _ in range(3):
        data = base64.b64encode(encode_png(image))
        decode_image_bytes(base64.b64decode(data), max_bytes=len(data))
    return (time.perf_counter() - started) / 3 * 1000


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=40, help="Renders per measurement.")
    parser.add_argument("--steps", type=int, default=2, help="Denoising steps per render.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (direct and each service).")
    parser.add_argument("--concurrency", type=int, default=2, help="Client requests in flight per endpoint (keeps each queue fed).")
    parser.add_argument("--ref-size", default="640x480", help="Reference image size WxH (two JPEG references).")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from genevolve_graph.generators.diffusers_backend import (
        DiffusersConfig,
        DiffusersEngine,
        DiffusersRenderer,
        GenerationDefaults,
        PipelineSpec,
        load_pipeline,
    )
    from genevolve_graph.generators.references import output_size
    from genevolve_graph.generators.service_client import ServiceConfig, ServiceRenderer
    from genevolve_graph.core.state import Program, Reference
    from genevolve_graph.testing.tiny_qwen_edit import (
        TINY_CONDITION_IMAGE_PIXELS,
        TINY_LONG_SIDE,
        TINY_VAE_IMAGE_PIXELS,
        build_tiny_edit_pipeline,
        save_tiny_pipeline,
    )

    torch.set_num_threads(args.threads)
    ref_size = tuple(int(part) for part in args.ref_size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="render-bench-"))
    pipeline_dir = save_tiny_pipeline(build_tiny_edit_pipeline(), work / "tiny-edit")
    references = make_references(work, ref_size)
    program = Program(
        gen_prompt="The teapot of the first reference image on the table of the second reference image, soft window light.",
        reference_images=[Reference(img_id=f"IMG_00{i + 1}", local_path=str(p)) for i, p in enumerate(references)],
    )
    width, height = output_size(ref_size, long_side=TINY_LONG_SIDE)
    generation = GenerationDefaults(num_inference_steps=args.steps, true_cfg_scale=1.0, long_side=TINY_LONG_SIDE)
    print(f"tiny QwenImageEditPlusPipeline, {args.steps} steps, output {width}x{height}, two {args.ref_size} JPEG references "
          f"({', '.join(f'{p.stat().st_size // 1024} kB' for p in references)}), torch threads {args.threads}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    # 1. Direct pipeline calls.
    spec = PipelineSpec(source=str(pipeline_dir), device="cpu", dtype="float32", processor="image-only",
                        vae_image_pixels=TINY_VAE_IMAGE_PIXELS, condition_image_pixels=TINY_CONDITION_IMAGE_PIXELS)
    pipe = load_pipeline(spec)
    images = [Image.open(p).convert("RGB") for p in references]

    def direct_render(seed: int) -> None:
        with torch.inference_mode():
            pipe(image=images, prompt=program.gen_prompt, num_inference_steps=args.steps, true_cfg_scale=1.0,
                 width=width, height=height, generator=torch.Generator("cpu").manual_seed(seed))

    processes: list[subprocess.Popen] = []
    try:
        first, url_a = start_service(pipeline_dir, args.threads)
        second, url_b = start_service(pipeline_dir, args.threads)
        processes = [first, second]
        wait_ready(first, url_a)
        wait_ready(second, url_b)

        async def measure():
            one = ServiceRenderer(ServiceConfig(urls=(url_a,), generation=generation, concurrency=args.concurrency))
            two = ServiceRenderer(ServiceConfig(urls=(url_a, url_b), generation=generation, concurrency=args.concurrency))
            local = DiffusersRenderer(DiffusersConfig(generation=generation), engine=DiffusersEngine(pipe))
            for seed in range(3):
                direct_render(seed)
            await sequential(local, program, work, 3, "warm-local")
            await sequential(one, program, work, 3, "warm-a")
            await sequential(ServiceRenderer(ServiceConfig(urls=(url_b,), generation=generation)), program, work, 3, "warm-b")
            # Interleaved, so that load from elsewhere on a shared machine hits every path alike.
            direct, in_process, through_service, service_side = [], [], [], []
            async with httpx.AsyncClient() as http:
                for seed in range(args.renders):
                    started = time.perf_counter()
                    direct_render(seed)
                    direct.append(time.perf_counter() - started)
                    in_process += await sequential(local, program, work, 1, f"local{seed}")
                    through_service += await sequential(one, program, work, 1, f"seq{seed}")
                    # The same request's time inside the pipeline, as the service measured it.
                    service_side.append((await http.get(f"{url_a}/health")).json()["last_render_seconds"])
            wall_one = await concurrent(one, program, work, args.renders, "one")
            wall_two = await concurrent(two, program, work, args.renders, "two")
            return direct, in_process, through_service, service_side, wall_one, wall_two

        direct, in_process, through_service, service_side, wall_one, wall_two = asyncio.run(measure())
    finally:
        stop(processes)

    print("\nper render, one at a time (interleaved):")
    direct_median = summarize("pipeline called directly", direct)
    summarize("diffusers renderer (in process)", in_process)
    summarize("service renderer -> 1 service", through_service)
    target = max(0.05 * direct_median, 0.015)
    print(f"\nservice overhead per request (median of paired differences; target <= max(5% of "
          f"{direct_median * 1000:.0f} ms, 15 ms) = {target * 1000:.1f} ms):")
    for label, baseline in (("vs the pipeline called directly (references pre-decoded)", direct),
                            ("vs the in-process diffusers renderer (same file reading and decoding)", in_process)):
        differences = [b - a for a, b in zip(baseline, through_service)]
        overhead = statistics.median(differences)
        quartiles = statistics.quantiles(differences, n=4)
        low = statistics.quantiles(through_service, n=10)[0] - statistics.quantiles(baseline, n=10)[0]
        print(f"  {label}: {overhead * 1000:.1f} ms = {overhead / direct_median:.1%} of a {args.steps}-step render "
              f"(p25-p75 {quartiles[0] * 1000:.1f}-{quartiles[-1] * 1000:.1f} ms) -> {'met' if overhead <= target else 'NOT met'}; "
              f"difference of the 10th percentiles (least disturbed runs): {low * 1000:.1f} ms")
    outside = [total - inside for total, inside in zip(through_service, service_side)]
    quartiles = statistics.quantiles(outside, n=4)
    median_outside = statistics.median(outside)
    print(f"  per request, client time minus the service's own pipeline time for that request: {median_outside * 1000:.1f} ms "
          f"(p25-p75 {quartiles[0] * 1000:.1f}-{quartiles[-1] * 1000:.1f} ms) -> {'met' if median_outside <= target else 'NOT met'}"
          "  [least sensitive to other load: both times come from the same request]")
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print("  note: the load average exceeds the CPU count; other processes share these cores and inflate the service "
              "path (a separate process that must be scheduled back in) more than the in-process paths")
    print(f"\n{args.renders} renders submitted together, {args.concurrency} in flight per endpoint:")
    print(f"  1 service process : {wall_one:6.2f} s  ({args.renders / wall_one:5.2f} renders/s)")
    print(f"  2 service processes: {wall_two:6.2f} s  ({args.renders / wall_two:5.2f} renders/s)")
    print(f"  speed-up from the second process: {wall_one / wall_two:.2f}x   (direct, serial: {sum(direct):.2f} s)")
    print(f"\nfor scale: base64 PNG encode + safe decode of a 1024x1024 reply costs {png_round_trip_ms():.0f} ms "
          f"(not in the tiny renders above; a real 40-step 1024x1024 render takes tens of seconds on a GPU)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
