"""Fixtures for the export / import / SFT tests: recorded trajectories in real checkpointers.

Trajectories run through the real graph and ``ChatOpenAI`` against the scripted
OpenAI-compatible server (real HTTP on 127.0.0.1). Reference images come from a copy of
the bundled example images under ``tmp_path``, so their paths lie outside the home
directory and the byte-identity checks hold on any machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from genevolve_graph import AgentContext
from genevolve_graph.tools.local_images import DEFAULT_IMAGE_DIR


@pytest.fixture
def image_dir(tmp_path) -> Path:
    target = tmp_path / "ref-images"
    shutil.copytree(DEFAULT_IMAGE_DIR, target)
    return target


@pytest.fixture
def make_ctx(tmp_path, image_dir):
    def make(server, **overrides) -> AgentContext:
        base = dict(policy="openai", base_url=server.base_url, model="genevolve-8b", output_dir=str(tmp_path / "renders"),
                    renderer="none", retry_initial_delay=0.01, request_timeout=5.0, image_dir=str(image_dir),
                    experiment="exp-a")
        base.update(overrides)
        return AgentContext(**base)

    return make
