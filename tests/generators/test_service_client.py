"""The service backend against real render services (uvicorn on 127.0.0.1, tiny pipeline)."""

from __future__ import annotations

import asyncio
import base64
import io
import socket

import httpx
import numpy as np
import pytest
from PIL import Image

from genevolve_graph.core.context import AgentContext
from genevolve_graph.generators.base import RenderError
from genevolve_graph.generators.diffusers_backend import DiffusersConfig, DiffusersRenderer, GenerationDefaults
from genevolve_graph.core.options import renderer_options_from_cli
from genevolve_graph.generators.registry import make_renderer
from genevolve_graph.generators.service_app import ServiceSettings, create_app
from genevolve_graph.generators.service_client import ServiceConfig, ServiceRenderer, decode_reply_image
from genevolve_graph.core.state import Program, Reference
from genevolve_graph.testing.server_thread import ServerThread

TINY_GENERATION = GenerationDefaults(num_inference_steps=2, true_cfg_scale=1.0, long_side=64)


def closed_port_url() -> str:
    """A loopback URL nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def client(*urls: str, **changes) -> ServiceRenderer:
    settings = dict(urls=tuple(urls), retry_delay=0.01, max_retry_delay=0.05, generation=TINY_GENERATION)
    settings.update(changes)
    return ServiceRenderer(ServiceConfig(**settings))


def health(url: str) -> dict:
    return httpx.get(f"{url}/health").json()


@pytest.fixture
def services(engine):
    """``services(n, **settings)`` starts n render services sharing the tiny engine."""
    servers = []

    def start(count: int = 1, **settings) -> list[str]:
        started = [ServerThread(create_app(ServiceSettings(**settings), engine=engine)).start() for _ in range(count)]
        servers.extend(started)
        return [server.url for server in started]

    yield start
    for server in servers:
        server.stop()


async def test_render_through_the_service_equals_the_diffusers_backend(services, tiny, engine, program, tmp_path):
    (url,) = services()
    config = DiffusersConfig.from_options(tiny.options)  # the same sampling settings on both paths
    result = await client(url, generation=config.generation).render(program, tmp_path / "service.png", seed=11)
    assert result.success, result.error
    assert result.backend == "service"
    direct = await DiffusersRenderer(config).render(program, tmp_path / "direct.png", seed=11)
    assert direct.success, direct.error
    service_pixels = np.asarray(Image.open(result.output_path).convert("RGB"))
    assert service_pixels.shape == (48, 64, 3)  # width/height forwarded: long side 64 from the 48x32 first reference
    assert np.array_equal(service_pixels, np.asarray(Image.open(direct.output_path).convert("RGB")))


async def test_fixed_size_is_forwarded(services, program, tmp_path):
    (url,) = services()
    renderer = client(url, generation=GenerationDefaults(num_inference_steps=2, true_cfg_scale=1.0, width=32, height=96))
    result = await renderer.render(program, tmp_path / "fixed.png")
    assert result.success, result.error
    assert Image.open(result.output_path).size == (32, 96)


async def test_round_robin_over_two_services(services, program, tmp_path):
    urls = services(2)
    renderer = client(*urls)
    for index in range(4):
        result = await renderer.render(program, tmp_path / f"{index}.png", seed=index)
        assert result.success, result.error
    assert [health(url)["completed"] for url in urls] == [2, 2]


async def test_failover_from_a_dead_endpoint(services, program, tmp_path):
    (url,) = services()
    renderer = client(closed_port_url(), url)
    results = [await renderer.render(program, tmp_path / f"{i}.png") for i in range(3)]
    assert all(r.success for r in results), [r.error for r in results]
    assert health(url)["completed"] == 3


async def test_all_endpoints_down_is_a_clear_failure(program, tmp_path):
    renderer = client(closed_port_url(), closed_port_url(), retries=2)
    result = await renderer.render(program, tmp_path / "x.png")
    assert not result.success
    assert "failed after 3 attempt(s)" in result.error and "connection failed" in result.error
    assert not (tmp_path / "x.png").exists()


async def test_503_moves_to_the_next_endpoint(services, gate, program, tmp_path):
    busy, free = services(2, max_queue=1)
    with gate() as g:
        # Fill the first service: one render held in the pipeline, one waiting.
        async with httpx.AsyncClient(timeout=60) as http:
            payload = client(busy).payload(program, [_uri(program.reference_images[0].local_path)], [(48, 32)], 0)
            held = asyncio.create_task(http.post(f"{busy}/generate", json=payload))
            assert await asyncio.to_thread(g.entered.wait, 10)
            waiting = asyncio.create_task(http.post(f"{busy}/generate", json=payload))
            while health(busy)["queued"] < 1:
                await asyncio.sleep(0.01)
            renderer = client(busy, free)  # round-robin starts at the busy one
            render = asyncio.create_task(renderer.render(program, tmp_path / "moved.png"))
            while health(busy)["rejected"] < 1:
                await asyncio.sleep(0.01)
            g.release.set()
            result = await render
            assert (await held).status_code == 200 and (await waiting).status_code == 200
    assert result.success, result.error
    assert health(busy)["rejected"] == 1


async def test_503_with_one_endpoint_waits_and_retries(services, gate, program, tmp_path):
    (url,) = services(max_queue=1)
    renderer = client(url, retries=30, retry_delay=0.05, max_retry_delay=0.2)
    with gate() as g:
        async with httpx.AsyncClient(timeout=60) as http:
            payload = renderer.payload(program, [_uri(program.reference_images[0].local_path)], [(48, 32)], 0)
            held = asyncio.create_task(http.post(f"{url}/generate", json=payload))
            assert await asyncio.to_thread(g.entered.wait, 10)
            waiting = asyncio.create_task(http.post(f"{url}/generate", json=payload))
            while health(url)["queued"] < 1:
                await asyncio.sleep(0.01)
            render = asyncio.create_task(renderer.render(program, tmp_path / "later.png"))
            while health(url)["rejected"] < 1:
                await asyncio.sleep(0.01)
            g.release.set()  # the queue drains; a retry gets in
            result = await render
            await held, await waiting
    assert result.success, result.error
    assert health(url)["rejected"] >= 1 and health(url)["completed"] == 3


async def test_5xx_is_retried(services, engine, program, tmp_path):
    import torch

    (url,) = services()
    calls = {"n": 0}

    def first_call_runs_out_of_memory(module, args):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")

    handle = engine.pipeline.transformer.register_forward_pre_hook(first_call_runs_out_of_memory)
    try:
        result = await client(url).render(program, tmp_path / "retried.png")
    finally:
        handle.remove()
    assert result.success, result.error
    assert health(url)["failed"] == 1 and health(url)["completed"] == 1


async def test_client_timeout_is_retried_then_reported(services, gate, program, tmp_path):
    (url,) = services()
    renderer = client(url, timeout=0.3, retries=1)
    with gate():
        result = await renderer.render(program, tmp_path / "slow.png")
    assert not result.success
    assert "failed after 2 attempt(s)" in result.error and "no answer within the total deadline of 0.3 s" in result.error


async def test_400_is_not_retried(services, program, tmp_path):
    (url,) = services()
    renderer = client(url, generation=GenerationDefaults(num_inference_steps=1000, true_cfg_scale=1.0, long_side=64))
    result = await renderer.render(program, tmp_path / "bad.png")
    assert not result.success
    assert "refused the request (HTTP 400)" in result.error and "num_inference_steps must be between 1 and 100" in result.error
    assert health(url)["completed"] == 0


async def test_concurrency_bound_per_endpoint_keeps_the_queue_from_overflowing(services, program, tmp_path):
    (url,) = services(max_queue=1)
    renderer = client(url, concurrency=1, retries=0)
    results = await asyncio.gather(*(renderer.render(program, tmp_path / f"{i}.png", seed=i) for i in range(5)))
    assert all(r.success for r in results), [r.error for r in results]
    assert health(url)["rejected"] == 0 and health(url)["completed"] == 5


async def test_unbounded_concurrency_would_overflow_the_same_queue(services, gate, program, tmp_path):
    """The counterpart of the test above: without the bound the service refuses work."""
    (url,) = services(max_queue=1)
    renderer = client(url, concurrency=5, retries=0)
    with gate() as g:
        render = asyncio.gather(*(renderer.render(program, tmp_path / f"{i}.png") for i in range(5)))
        while health(url)["rejected"] < 3:
            await asyncio.sleep(0.01)
        g.release.set()
        results = await render
    assert sum(r.success for r in results) == 2, [r.error for r in results]
    assert all("HTTP 503" in r.error for r in results if not r.success)


async def test_gif_and_large_references_are_reencoded(services, tmp_path):
    (url,) = services()
    frames = [Image.new("P", (40, 30), index) for index in (3, 4)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (9, 9, 9)).save(big)
    program = Program(gen_prompt="x", reference_images=[Reference(img_id="IMG_001", local_path=str(gif)),
                                                        Reference(img_id="IMG_002", local_path=str(big))])
    result = await client(url).render(program, tmp_path / "out.png")
    assert result.success, result.error
    assert Image.open(result.output_path).size == (64, 48)


def test_reply_decoding_accepts_peer_field_names():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    assert decode_reply_image({"success": True, "image_base64": encoded}).image.size == (8, 8)
    assert decode_reply_image({"success": True, "image": "data:image/png;base64," + encoded}).image.size == (8, 8)
    with pytest.raises(RenderError, match="without an image"):
        decode_reply_image({"success": True})
    with pytest.raises(RenderError, match="unusable image"):
        decode_reply_image({"success": True, "image": base64.b64encode(b"<html/>").decode()})


def test_registry_and_cli_options():
    options = renderer_options_from_cli(service_urls=["http://a:8001,http://b:8001", "http://c:8001/"],
                                        extra=["num_inference_steps=8", "service_concurrency=3"])
    renderer = make_renderer(AgentContext(renderer="service", options=options))
    assert isinstance(renderer, ServiceRenderer)
    assert renderer.config.urls == ("http://a:8001", "http://b:8001", "http://c:8001")
    assert renderer.config.concurrency == 3 and renderer.config.generation.num_inference_steps == 8
    with pytest.raises(RenderError, match="option 'service_urls'.*--service-url"):
        make_renderer(AgentContext(renderer="service"))
    with pytest.raises(RenderError, match="not an http"):
        make_renderer(AgentContext(renderer="service", options={"service_urls": "ftp://x"}))


def _uri(path: str) -> str:
    from genevolve_graph.safety.imaging import to_data_uri

    with open(path, "rb") as handle:
        return to_data_uri(handle.read())


async def test_a_size_off_the_multiple_is_rounded_down_and_said(services, program, tmp_path):
    """Width 17 would silently become 16 inside the pipeline: the render result says so."""
    (url,) = services()
    generation = GenerationDefaults(num_inference_steps=2, true_cfg_scale=1.0, width=33, height=97)
    result = await client(url, generation=generation).render(program, tmp_path / "odd.png")
    assert result.success, result.error
    assert Image.open(result.output_path).size == (32, 96)
    assert result.notes == ["size 33x97 is not a multiple of 16: rendered at 32x96 "
                            "(set width and height to multiples of 16 to choose the size exactly)"]
    exact = await client(url, generation=GenerationDefaults(num_inference_steps=2, true_cfg_scale=1.0, width=32, height=96)).render(
        program, tmp_path / "exact.png")
    assert exact.success and exact.notes == []


def test_size_notes_of_the_generation_settings():
    assert GenerationDefaults(width=17, height=16).size_for(None) == (16, 16)
    assert "17x16" in GenerationDefaults(width=17, height=16).size_note
    assert GenerationDefaults(long_side=1000).size_note.startswith("long_side 1000 is not a multiple of 16")
    assert GenerationDefaults().size_note is None and GenerationDefaults(width=64, height=48).notes() == []
