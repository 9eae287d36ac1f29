"""Fixtures for the generator backends: one tiny Qwen edit pipeline per session, saved to a
folder and loaded back through the loader users run, reference images, and a gate that
holds the real pipeline at its first denoising step (for queue and timeout tests)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from genevolve_graph.core.state import Program, Reference


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run the tiny pipeline on one CPU thread, restoring the setting after each module.

    The tiny model gains nothing from intra-op threads, and on a shared 2-core machine
    their spin-waiting next to the server threads of these tests makes renders ten times
    slower and their timing erratic.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@dataclass(frozen=True)
class TinyPipelines:
    edit_dir: Path
    t2i_dir: Path
    options: dict[str, Any]
    """Backend options for the tiny edit pipeline (no text-to-image pipeline)."""

    def with_t2i(self) -> dict[str, Any]:
        return {**self.options, "t2i_pipeline": str(self.t2i_dir)}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyPipelines:
    """The tiny pipeline, built from configs and saved in the released layout (once)."""
    from genevolve_graph.testing.tiny_qwen_edit import (
        build_tiny_edit_pipeline,
        save_tiny_pipeline,
        save_tiny_text_to_image_pipeline,
        tiny_loader_options,
    )

    root = tmp_path_factory.mktemp("tiny-qwen")
    pipe = build_tiny_edit_pipeline()
    edit_dir = save_tiny_pipeline(pipe, root / "edit")
    t2i_dir = save_tiny_text_to_image_pipeline(pipe, root / "t2i")
    return TinyPipelines(edit_dir, t2i_dir, {**tiny_loader_options(), "pipeline": str(edit_dir)})


@pytest.fixture(scope="session")
def engine(tiny):
    """The tiny pipeline loaded from its folder by the users' loader (shared, process-wide)."""
    from genevolve_graph.generators.diffusers_backend import DiffusersConfig, get_engine

    return get_engine(DiffusersConfig.from_options(tiny.options))


@pytest.fixture(scope="session")
def t2i_engine(tiny):
    from genevolve_graph.generators.diffusers_backend import DiffusersConfig, get_engine

    return get_engine(DiffusersConfig.from_options(tiny.with_t2i()))


@pytest.fixture(scope="session")
def reference_files(tmp_path_factory) -> tuple[Path, Path]:
    """A 48x32 PNG (aspect 3:2) and a 32x32 JPEG."""
    root = tmp_path_factory.mktemp("refs")
    first = root / "first.png"
    second = root / "second.jpg"
    image = Image.new("RGB", (48, 32), (200, 30, 30))
    for x in range(0, 48, 6):
        image.putpixel((x, 16), (255, 255, 255))
    image.save(first)
    Image.new("RGB", (32, 32), (20, 160, 40)).save(second, quality=90)
    return first, second


@pytest.fixture
def program(reference_files) -> Program:
    first, second = reference_files
    return Program(
        gen_prompt="The red card from the first reference image lying on the green cloth of the second reference image.",
        reference_images=[
            Reference(img_id="IMG_001", local_path=str(first), note="the red card"),
            Reference(img_id="IMG_002", local_path=str(second), note="the green cloth"),
        ],
    )


class PipelineGate:
    """Holds the real pipeline at its next transformer call until released.

    A forward pre-hook on the transformer: the pipeline, its thread and the service are
    all real; only the moment they go on is chosen by the test.
    """

    def __init__(self, pipeline: Any) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._handle = pipeline.transformer.register_forward_pre_hook(self._hold)

    def _hold(self, module: Any, args: Any) -> None:
        self.entered.set()
        self.release.wait(timeout=30)

    def remove(self) -> None:
        self.release.set()
        self._handle.remove()


@pytest.fixture
def gate(engine) -> Iterator:
    """``with gate() as g:`` holds the shared tiny pipeline until ``g.release.set()``."""

    @contextlib.contextmanager
    def hold() -> Iterator[PipelineGate]:
        g = PipelineGate(engine.pipeline)
        try:
            yield g
        finally:
            g.remove()

    return hold


@pytest.fixture
def serve(engine):
    """``serve(**settings)`` runs the service on the shared tiny engine; returns its URL."""
    servers = []

    from genevolve_graph.generators.service_app import ServiceSettings, create_app
    from genevolve_graph.testing.server_thread import ServerThread

    def start(**settings) -> str:
        server = ServerThread(create_app(ServiceSettings(**settings), engine=engine)).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()
