"""The render service over real HTTP (uvicorn on 127.0.0.1) with the tiny pipeline."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genevolve_graph.generators.diffusers_backend import DiffusersConfig, GenerationJob
from genevolve_graph.generators.service_app import ServiceLimits, ServiceSettings, create_app
from genevolve_graph.safety.imaging import to_data_uri
from genevolve_graph.testing.server_thread import ServerThread


def data_uri(fmt="PNG", size=(48, 32), color=(200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return to_data_uri(buffer.getvalue())


def body(**changes):
    payload = {
        "image_urls": [data_uri(), data_uri("JPEG", (32, 32), (20, 160, 40))],
        "prompt": "the card of the first reference image on the cloth of the second",
        "seed": 5,
        "true_cfg_scale": 1.0,
        "negative_prompt": " ",
        "num_inference_steps": 2,
        "guidance_scale": 1.0,
        "num_images_per_prompt": 1,
        "width": 64,
        "height": 48,
    }
    payload.update(changes)
    return payload


def decode(reply) -> Image.Image:
    assert reply["success"] is True, reply
    return Image.open(io.BytesIO(base64.b64decode(reply["image"])))


def test_health_contract(serve, engine):
    url = serve()
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok"
    assert health["pipeline"] == "QwenImageEditPlusPipeline" and health["device"] == "cpu"
    assert health["running"] is False and health["queued"] == 0 and health["max_queue"] == 8


def test_generate_matches_a_direct_pipeline_call(serve, engine):
    url = serve()
    reply = httpx.post(f"{url}/generate", json=body(), timeout=60)
    assert reply.status_code == 200
    image = decode(reply.json())
    assert image.format == "PNG" and image.size == (64, 48)
    payload = body()
    from genevolve_graph.safety.imaging import decode_data_uri

    direct = engine.generate(
        GenerationJob(
            prompt=payload["prompt"],
            images=[decode_data_uri(u) for u in payload["image_urls"]],
            seed=5,
            width=64,
            height=48,
            num_inference_steps=2,
            true_cfg_scale=1.0,
            guidance_scale=1.0,
            negative_prompt=" ",
        )
    )
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(direct))
    health = httpx.get(f"{url}/health").json()
    assert health["completed"] == 1 and health["failed"] == 0 and health["last_render_seconds"] > 0


def test_peer_style_request_without_size_and_with_extra_fields(serve):
    """Gen-Searcher's client sends no width/height and fields we do not know."""
    url = serve(default_long_side=64)
    payload = body(client_name="gen-searcher", image_urls=[data_uri(size=(48, 32))])
    del payload["width"], payload["height"]
    reply = httpx.post(f"{url}/generate", json=payload, timeout=60)
    assert reply.status_code == 200 and decode(reply.json()).size == (64, 48)


def test_text_only_request_with_a_text_to_image_pipeline(t2i_engine):
    with ServerThread(create_app(ServiceSettings(), engine=t2i_engine)) as url:
        assert httpx.get(f"{url}/health").json()["text_to_image"] is True
        reply = httpx.post(f"{url}/generate", json=body(image_urls=[], width=64, height=64), timeout=60)
        assert reply.status_code == 200 and decode(reply.json()).size == (64, 64)


def big_png_uri() -> str:
    noisy = Image.effect_noise((300, 300), 80).convert("RGB")  # ~270 kB uncompressed
    buffer = io.BytesIO()
    noisy.save(buffer, format="PNG", compress_level=0)
    return to_data_uri(buffer.getvalue())


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "x" * 4001}, "prompt is 4001 characters, more than the limit of 4000"),
        ({"negative_prompt": "x" * 4001}, "negative_prompt is longer than the limit"),
        ({"image_urls": [data_uri()] * 5}, "image_urls has 5 images, more than the limit of 4"),
        ({"num_inference_steps": 0}, "num_inference_steps must be between 1 and 100 (got 0)"),
        ({"num_inference_steps": 500}, "num_inference_steps must be between 1 and 100 (got 500)"),
        ({"true_cfg_scale": 50}, "true_cfg_scale must be between 1 and 20"),
        ({"guidance_scale": -1}, "guidance_scale must be between 0 and 20"),
        ({"num_images_per_prompt": 2}, "num_images_per_prompt must be 1"),
        ({"seed": -1}, "seed must be between 0"),
        ({"width": None}, "width and height go together"),
        ({"width": 4096, "height": 64}, "width must be between 16 and 2048 (got 4096)"),
        ({"image_urls": ["https://example.com/cat.png"]}, "image_urls[0]: this service does not fetch URLs"),
        ({"image_urls": ["file:///etc/passwd"]}, "image_urls[0]: expected a data URI"),
        ({"image_urls": [data_uri(), "data:image/png;base64,%%%"]}, "image_urls[1]: data URI has invalid base64"),
        ({"image_urls": ["data:image/png;base64," + base64.b64encode(b"<svg/>").decode()]}, "image_urls[0]: not an allowed image format"),
        ({"image_urls": [data_uri("BMP")]}, "image_urls[0]: not an allowed image format"),
        ({"image_urls": []}, "image_urls is empty and this service has no text-to-image pipeline"),
        ({"prompt": 42}, "invalid request: prompt"),
        ({"seed": "abc"}, "invalid request: seed"),
    ],
)
def test_each_bad_input_is_a_400_with_a_clear_message(serve, changes, fragment):
    url = serve()
    reply = httpx.post(f"{url}/generate", json=body(**changes), timeout=30)
    assert reply.status_code == 400, reply.text
    payload = reply.json()
    assert payload["success"] is False and fragment in payload["message"]


def test_reference_byte_and_pixel_limits(engine):
    limits = ServiceLimits(max_reference_bytes=200_000, max_reference_pixels=100_000)
    with ServerThread(create_app(ServiceSettings(limits=limits), engine=engine)) as url:
        reply = httpx.post(f"{url}/generate", json=body(image_urls=[big_png_uri()]), timeout=30)
        assert reply.status_code == 400 and "image_urls[0]: image data URI holds more than the limit of 200,000 bytes" in reply.json()["message"]
        reply = httpx.post(f"{url}/generate", json=body(image_urls=[data_uri(size=(400, 400))]), timeout=30)
        assert reply.status_code == 400 and "exceeds the 100000-pixel cap" in reply.json()["message"]


def test_body_larger_than_any_valid_request_is_refused_before_parsing(engine):
    limits = ServiceLimits(max_reference_images=1, max_reference_bytes=10_000, max_prompt_chars=100)
    with ServerThread(create_app(ServiceSettings(limits=limits), engine=engine)) as url:
        reply = httpx.post(f"{url}/generate", content=b"{" + b" " * 200_000 + b"}", headers={"content-type": "application/json"})
        assert reply.status_code == 413 and "larger than the limit" in reply.json()["message"]
        chunks = (b" " * 50_000 for _ in range(5))  # no Content-Length: counted as it streams
        reply = httpx.post(f"{url}/generate", content=chunks, headers={"content-type": "application/json"})
        assert reply.status_code == 413


def test_queue_full_answers_503_with_retry_after(serve, gate):
    url = serve(max_queue=1)
    results: dict[str, httpx.Response] = {}

    def post(name):
        results[name] = httpx.post(f"{url}/generate", json=body(), timeout=60)

    with gate() as g:
        first = threading.Thread(target=post, args=("running",))
        first.start()
        assert g.entered.wait(10)  # the worker is inside the pipeline
        second = threading.Thread(target=post, args=("queued",))
        second.start()
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/health").json()["queued"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = httpx.post(f"{url}/generate", json=body(), timeout=10)
        health = httpx.get(f"{url}/health").json()  # /health answers while the pipeline runs
        g.release.set()
        first.join(30)
        second.join(30)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["success"] is False and "queue is full" in refused.json()["message"]
    assert health["running"] is True and health["queued"] == 1 and health["rejected"] == 1
    assert results["running"].status_code == 200 and results["queued"].status_code == 200


def test_request_timeout_answers_504_and_stops_the_render(serve, gate, engine):
    # The gate holds the render, so only the timeout can answer it. The timeout leaves the tiny
    # pipeline's ordinary render below (a tenth of a second alone) a wide margin on a loaded machine.
    url = serve(request_timeout=3.0)
    with gate() as g:
        reply = httpx.post(f"{url}/generate", json=body(num_inference_steps=50), timeout=60)
        g.release.set()
    assert reply.status_code == 504 and "request timeout of 3 s" in reply.json()["message"]
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/health").json()["running"]:
        assert time.monotonic() < deadline, "the timed-out render kept the worker"
        time.sleep(0.01)
    assert httpx.get(f"{url}/health").json()["failed"] == 1  # stopped early, not run to the end
    assert httpx.post(f"{url}/generate", json=body(), timeout=60).status_code == 200


def test_out_of_memory_answers_500_and_the_service_lives_on(serve, engine):
    import torch

    url = serve()

    def exhausted(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")

    handle = engine.pipeline.transformer.register_forward_pre_hook(exhausted)
    try:
        reply = httpx.post(f"{url}/generate", json=body(), timeout=60)
    finally:
        handle.remove()
    assert reply.status_code == 500
    assert reply.json()["success"] is False and "out of accelerator memory" in reply.json()["message"]
    assert httpx.post(f"{url}/generate", json=body(), timeout=60).status_code == 200
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["failed"] == 1 and health["completed"] == 1


def test_service_loads_the_pipeline_folder_at_startup(tiny):
    """create_app(config=...) loads through the users' loader in the lifespan."""
    config = DiffusersConfig.from_options(tiny.options)
    with ServerThread(create_app(ServiceSettings(), config=config)) as url:
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["pipeline"] == "QwenImageEditPlusPipeline"
        reply = httpx.post(f"{url}/generate", json=body(), timeout=60)
        assert reply.status_code == 200 and decode(reply.json()).size == (64, 48)


def test_serve_renderer_command_refuses_bad_input_in_one_line(tmp_path):
    import typer

    from genevolve_graph.cli.serve_renderer import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """A group, as the project's CLI is."""

    register(app)
    runner = CliRunner()
    for args, fragment in [
        (["--pipeline", str(tmp_path / "missing"), "--processor", "default"], "option 'pipeline'"),
        (["--pipeline", "x", "--dtype", "fp8"], "option 'dtype'"),
        (["--pipeline", "x", "--max-queue", "0"], "--max-queue must be at least 1"),
        (["--pipeline", "x", "--port", "70000"], "--port must be between 1 and 65535"),
        (["--pipeline", "x", "--default-long-side", "8"], "--default-long-side must be at least 16"),
    ]:
        result = runner.invoke(app, ["serve-renderer", *args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
