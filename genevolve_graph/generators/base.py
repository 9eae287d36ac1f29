"""The renderer interface: a generator backend turns a program into an image file."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from genevolve_graph.core.state import Program, RenderResult


class RenderError(RuntimeError):
    """A render failed for a reason worth showing to the user as it is."""


@runtime_checkable
class Renderer(Protocol):
    """Every backend (preview, diffusers, service, gemini) has this shape.

    ``render`` writes one image to ``out_path`` and reports; it raises nothing for
    failures of the backend itself: those come back as ``RenderResult(success=False)``.
    """

    name: str

    async def render(self, program: Program, out_path: Path, *, seed: int = 0) -> RenderResult: ...
