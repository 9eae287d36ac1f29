"""Which generator backend a renderer name means: the ``GENERATORS`` registry of
``genevolve_graph.core.registry`` (built-ins plus packages registered under the entry-point group
``genevolve_graph.generators``), imported only when chosen, so that torch, diffusers or
google-genai are needed only by their users. Kept as a module so existing imports work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genevolve_graph.core.registry import GENERATORS, UnknownName

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.generators.base import Renderer

RENDERERS = GENERATORS
UnknownRenderer = UnknownName


def make_renderer(ctx: "AgentContext") -> "Renderer":
    """The renderer ``ctx.renderer`` names, configured from ``ctx.options``."""
    if ctx.renderer == "none":
        raise UnknownName("renderer 'none' renders nothing; choose a renderer to render (context field 'renderer')")
    return GENERATORS.make(ctx)
