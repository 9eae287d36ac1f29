"""Which generator backend a renderer name means (imported only when chosen, so that
torch, diffusers or google-genai are needed only by their users)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genevolve_graph.context import AgentContext
    from genevolve_graph.generators.base import Renderer

RENDERERS: dict[str, str] = {
    "preview": "genevolve_graph.generators.preview:from_context",
    "diffusers": "genevolve_graph.generators.diffusers_backend:from_context",
    "service": "genevolve_graph.generators.service_client:from_context",
    "gemini": "genevolve_graph.generators.gemini:from_context",
}


class UnknownRenderer(ValueError):
    """A renderer name that is not registered."""


def make_renderer(ctx: "AgentContext") -> "Renderer":
    """The renderer ``ctx.renderer`` names, configured from ``ctx.options``."""
    if ctx.renderer not in RENDERERS:
        raise UnknownRenderer(f"unknown renderer {ctx.renderer!r}; choose one of {', '.join(sorted(RENDERERS) + ['none'])}")
    module, _, attr = RENDERERS[ctx.renderer].partition(":")
    return getattr(importlib.import_module(module), attr)(ctx)
