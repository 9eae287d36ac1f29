"""Whole trajectories through the public API (``build_graph``, ``AgentContext``) rendered by
the real generator backends: the tiny pipeline in process, and through a render service."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from PIL import Image

from genevolve_graph import AgentContext, build_graph
from genevolve_graph.generators.service_app import ServiceSettings, create_app
from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.agent.runner import run_with_saver
from genevolve_graph.testing.server_thread import ServerThread

REQUEST = "The Eiffel Tower at dusk on a vintage travel poster"


async def run_graph(ctx: AgentContext, thread_id: str):
    async with open_checkpointer("memory") as saver:
        return await run_with_saver(REQUEST, ctx, saver, thread_id=thread_id, graph=build_graph(saver))


@pytest.fixture
def tiny_generation() -> dict:
    return {"num_inference_steps": 2, "true_cfg_scale": 1.0, "long_side": 64}


async def test_graph_renders_with_the_service_renderer(engine, tmp_path, tiny_generation):
    with ServerThread(create_app(ServiceSettings(), engine=engine)) as url:
        ctx = AgentContext(renderer="service", output_dir=str(tmp_path), seed=3,
                           options={"service_urls": [url], "service_retry_delay": 0.01, **tiny_generation})
        result = await run_graph(ctx, "service-run")
        health = httpx.get(f"{url}/health").json()
    assert result.termination == "answer", result.error
    assert result.program is not None and result.program.reference_images, "the rules policy should bind a reference"
    render = result.render
    assert render is not None and render.success, render and render.error
    assert render.backend == "service" and Path(render.output_path) == tmp_path / "service-run.png"
    first = Image.open(result.program.reference_images[0].local_path)
    width, height = Image.open(render.output_path).size
    assert max(width, height) == 64 and (width >= height) == (first.width >= first.height)
    assert health["completed"] == 1


async def test_graph_renders_with_the_diffusers_renderer(tiny, engine, tmp_path, tiny_generation):
    ctx = AgentContext(renderer="diffusers", output_dir=str(tmp_path), options={**tiny.options, **tiny_generation})
    result = await run_graph(ctx, "diffusers-run")
    assert result.termination == "answer", result.error
    assert result.render is not None and result.render.success, result.render.error
    assert result.render.backend == "diffusers" and Image.open(result.render.output_path).format == "PNG"


async def test_graph_records_a_failed_render_without_failing(tmp_path):
    ctx = AgentContext(renderer="service", output_dir=str(tmp_path), options={})  # no service URL configured
    result = await run_graph(ctx, "no-url")
    assert result.termination == "answer"
    assert result.render is not None and not result.render.success
    assert "service_urls" in result.render.error


def cli_run(tmp_path: Path, *args: str):
    from typer.testing import CliRunner

    from genevolve_graph.cli.app import app

    return CliRunner().invoke(app, ["run", REQUEST, "--out", str(tmp_path / "out"), "--checkpoint", "memory", "-q", *args])


TINY_FLAGS = ["--option", "num_inference_steps=2", "--option", "true_cfg_scale=1.0", "--option", "long_side=64"]


def test_cli_run_with_the_service_renderer(engine, tmp_path):
    with ServerThread(create_app(ServiceSettings(), engine=engine)) as url:
        result = cli_run(tmp_path, "--renderer", "service", "--option", f"service_urls={url}", *TINY_FLAGS)
    assert result.exit_code == 0, result.output
    image = tmp_path / "out" / "image.png"
    assert f"image: {image}" in result.output and max(Image.open(image).size) == 64


def test_cli_run_with_the_diffusers_renderer(tiny, engine, tmp_path):
    flags = [item for key, value in tiny.options.items() for item in ("--option", f"{key}={value}")]
    result = cli_run(tmp_path, "--renderer", "diffusers", *flags, *TINY_FLAGS)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "image.png").format == "PNG"
