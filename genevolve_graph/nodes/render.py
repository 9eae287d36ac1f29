"""The render node: hands the program to the configured generator backend."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.config import get_config

from genevolve_graph.core.context import AgentContext
from genevolve_graph.core.guard import check_output_path, is_caller_context
from genevolve_graph.nodes.common import checked_context, emit
from genevolve_graph.util.paths import default_output_dir
from genevolve_graph.nodes.services import Services
from genevolve_graph.core.state import AgentState, Program, RenderResult


def output_path(ctx: AgentContext, thread_id: str) -> Path:
    """``output_dir/output_name``; the name defaults to ``<thread_id>.png``."""
    directory = Path(ctx.output_dir).expanduser() if ctx.output_dir else default_output_dir()
    name = ctx.options.get("output_name") or f"{thread_id or 'image'}.png"
    return directory / name


def make_render_node(services: Services):
    async def render(state: AgentState) -> dict[str, Any]:
        ctx = await checked_context(services.confine)
        program = state["program"]
        thread_id = str(get_config().get("configurable", {}).get("thread_id", ""))
        path = output_path(ctx, thread_id)
        if services.confine or is_caller_context(ctx):  # a caller's thread id names the file too
            await asyncio.to_thread(check_output_path, path)
        return {"render": await render_program(services, ctx, program, path)}

    return render


async def render_program(services: Services, ctx: AgentContext, program: Program, path: Path) -> RenderResult:
    """One program through the context's renderer into ``path``, with the progress events;
    a failure of the backend is the result, never an exception (the render-only graph,
    ``genevolve_graph.serving.render_graph``, shares this with the agent's render node)."""
    emit("render_started", renderer=ctx.renderer, path=str(path))
    try:
        renderer = await services.aget_renderer(ctx)
        result = await renderer.render(program, path, seed=ctx.seed)
    except Exception as exc:  # noqa: BLE001 - a render failure is recorded, not raised
        result = RenderResult(success=False, backend=ctx.renderer, error=f"{type(exc).__name__}: {exc}")
    emit("render_done", success=result.success, path=result.output_path, error=result.error)
    return result
