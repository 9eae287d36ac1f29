"""The render service under a flood, with client mistakes, and with a token (issue 12, items 5 and 11).

The service runs for real (uvicorn on 127.0.0.1, the tiny pipeline). Decoding is counted by
wrapping the service's own decode functions, so the flood test asserts *what* was decoded,
not how long anything took.
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest
from PIL import Image

from genevolve_graph.generators import service_app
from genevolve_graph.generators.service_app import ServiceLimits, ServiceSettings, create_app
from genevolve_graph.generators.service_client import ServiceConfig, ServiceRenderer
from genevolve_graph.safety.imaging import to_data_uri
from genevolve_graph.testing.server_thread import ServerThread

from .test_service import body, data_uri
from .test_service_client import TINY_GENERATION


@pytest.fixture
def decodes(monkeypatch) -> Counter:
    """Counts every read and decode of reference bytes inside the service (slowed a little,
    so that requests arriving together really overlap)."""
    counts: Counter = Counter()
    for name in ("data_uri_bytes", "decode_data_uri", "decode_image_bytes"):
        original = getattr(service_app, name, None)
        if original is None:
            continue

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            time.sleep(0.05)
            return _original(*args, **kwargs)

        monkeypatch.setattr(service_app, name, counted)
    return counts


def noise_uri(side: int, seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return to_data_uri(buffer.getvalue())


def test_a_flood_is_refused_with_503_before_anything_is_read_or_decoded(serve, gate, decodes):
    url = serve(max_queue=2)
    big = body(image_urls=[noise_uri(700, 1), noise_uri(700, 2)])
    replies: list[httpx.Response] = []
    lock = threading.Lock()

    def post():
        reply = httpx.post(f"{url}/generate", json=big, timeout=60)
        with lock:
            replies.append(reply)

    with gate() as g:
        running = threading.Thread(target=post)
        running.start()
        assert g.entered.wait(20)  # one request holds the worker
        decoded_first = decodes["decode_image_bytes"] + decodes["decode_data_uri"]
        read_first = decodes["data_uri_bytes"]
        flood = [threading.Thread(target=post) for _ in range(12)]
        for thread in flood:
            thread.start()
        deadline = time.monotonic() + 30
        while sum(r.status_code == 503 for r in replies) < 10:
            assert time.monotonic() < deadline, [r.status_code for r in replies]
            time.sleep(0.01)
        health = httpx.get(f"{url}/health").json()
        g.release.set()
        for thread in [running, *flood]:
            thread.join(60)
    statuses = Counter(r.status_code for r in replies)
    assert statuses == {503: 10, 200: 3}, statuses
    assert all(int(r.headers["Retry-After"]) >= 1 for r in replies if r.status_code == 503)
    # only the two admitted requests (the queue's two places) read and decoded their references
    assert decodes["decode_image_bytes"] + decodes["decode_data_uri"] == decoded_first + 2 * 2
    assert decodes["data_uri_bytes"] == read_first + 2 * 2
    assert health["rejected"] == 10 and health["admitted"] <= 3


def test_total_reference_pixels_and_concurrent_decodes_are_bounded(serve, decodes):
    url = serve(limits=ServiceLimits(max_total_reference_pixels=700 * 700 + 10), decode_concurrency=1)
    reply = httpx.post(f"{url}/generate", json=body(image_urls=[noise_uri(700, 3), noise_uri(700, 4)]), timeout=60)
    assert reply.status_code == 400 and "more than 490,010 pixels together" in reply.json()["message"]
    assert decodes["decode_image_bytes"] == 0  # refused from the headers, nothing decoded


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ('{"prompt": "a cat \\ud800", "image_urls": ["%s"], "num_inference_steps": 2, "width": 64, "height": 48}',
         "prompt is not valid Unicode: a lone surrogate U+D800 at character 6"),
        ('{"prompt": "a cat", "negative_prompt": "\\udfff", "image_urls": ["%s"], "num_inference_steps": 2, "width": 64, "height": 48}',
         "negative_prompt is not valid Unicode"),
    ],
)
def test_a_lone_surrogate_is_a_400_naming_the_field(serve, raw, fragment):
    url = serve()
    reply = httpx.post(f"{url}/generate", content=(raw % data_uri()).encode(), headers={"content-type": "application/json"}, timeout=60)
    assert reply.status_code == 400 and fragment in reply.json()["message"]


@pytest.mark.parametrize("size", [(6000, 2), (2, 6000), (1000, 40)])
def test_an_extreme_reference_is_a_400_not_a_500(serve, size):
    url = serve()
    for sized in (body(image_urls=[data_uri(size=size)]), body(image_urls=[data_uri(size=size)], width=None, height=None)):
        reply = httpx.post(f"{url}/generate", json=sized, timeout=60)
        assert reply.status_code == 400, reply.text
        assert f"{size[0]}x{size[1]}" in reply.json()["message"] and "aspect-ratio limit of 20:1" in reply.json()["message"]


class Counting:
    """Counts the requests that reach a service (to see what the client retries)."""

    def __init__(self, app) -> None:
        self.app = app
        self.posts = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts += 1
        await self.app(scope, receive, send)


async def test_the_client_sends_a_client_mistake_once(engine, tmp_path, reference_files):
    from genevolve_graph.core.state import Program, Reference

    counting = Counting(create_app(ServiceSettings(), engine=engine))
    wide = tmp_path / "wide.png"
    Image.new("RGB", (6000, 2), (10, 20, 30)).save(wide)
    with ServerThread(counting) as url:
        renderer = ServiceRenderer(ServiceConfig(urls=(url,), retries=4, retry_delay=0.01, max_retry_delay=0.02, generation=TINY_GENERATION))
        strip = Program(gen_prompt="a long strip as in the first reference image", reference_images=[Reference(img_id="IMG_001", local_path=str(wide))])
        result = await renderer.render(strip, tmp_path / "out.png")
        assert not result.success and "(HTTP 400)" in result.error and "aspect-ratio limit" in result.error, result.error
        assert counting.posts == 1  # a 4xx is not retried
        # a prompt that cannot be sent as JSON fails at once, clearly, without a request
        bad = Program(gen_prompt="a cat \ud800 on a mat", reference_images=[Reference(img_id="IMG_001", local_path=str(reference_files[0]))])
        result = await renderer.render(bad, tmp_path / "out.png")
        assert not result.success and "gen_prompt is not valid Unicode: a lone surrogate U+D800" in result.error
        assert counting.posts == 1


def test_the_token_guards_generate_and_the_client_sends_it(engine, tmp_path, program, monkeypatch, decodes):
    import asyncio

    url_app = create_app(ServiceSettings(token="s3cret-token"), engine=engine)
    with ServerThread(url_app) as url:
        assert httpx.get(f"{url}/health").status_code == 200  # health stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            refused = httpx.post(f"{url}/generate", json=body(), headers=headers, timeout=30)
            assert refused.status_code == 401 and "bearer token" in refused.json()["message"]
        assert sum(decodes.values()) == 0  # nothing read for an unauthenticated request
        monkeypatch.delenv("GENEVOLVE_SERVICE_TOKEN", raising=False)
        without = ServiceRenderer(ServiceConfig.from_options({"service_urls": [url], "num_inference_steps": 1}))
        assert "HTTP 401" in asyncio.run(without.render(program, tmp_path / "a.png")).error
        monkeypatch.setenv("GENEVOLVE_SERVICE_TOKEN", "s3cret-token")
        config = ServiceConfig.from_options({"service_urls": [url], "num_inference_steps": 1, "long_side": 64, "true_cfg_scale": 1.0})
        assert "s3cret-token" not in repr(config)
        result = asyncio.run(ServiceRenderer(config).render(program, tmp_path / "b.png"))
        assert result.success, result.error


def test_binding_beyond_loopback_without_a_token_warns():
    from genevolve_graph.generators.service_app import exposure_warning

    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("localhost", None) is None and exposure_warning("0.0.0.0", "t") is None
    for host in ("0.0.0.0", "::", "192.168.1.5", "render.example.org"):
        warning = exposure_warning(host, None)
        assert warning and "without authentication" in warning and "--token" in warning
