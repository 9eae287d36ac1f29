"""The render node: hands the program to the configured generator backend."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

from langgraph.config import get_config

from genevolve_graph.core.context import AgentContext
from genevolve_graph.core.guard import is_caller_context, served_output_path
from genevolve_graph.nodes.common import checked_context, emit
from genevolve_graph.util.file_modes import publish_file
from genevolve_graph.util.paths import default_output_dir, file_stem
from genevolve_graph.nodes.services import Services
from genevolve_graph.core.state import AgentState, Program, RenderResult


def output_path(ctx: AgentContext, thread_id: str) -> Path:
    """``output_dir/output_name``; the name defaults to ``<thread_id>.png``."""
    directory = Path(ctx.output_dir).expanduser() if ctx.output_dir else default_output_dir()
    name = ctx.options.get("output_name") or f"{thread_id or 'image'}.png"
    return directory / name


def served_image_name(ctx: AgentContext, thread_id: str) -> str:
    """A caller's image name: its ``output_name`` (checked by the guard), else the thread's."""
    return ctx.options.get("output_name") or f"{file_stem(thread_id) if thread_id else 'image'}.png"


def make_render_node(services: Services):
    async def render(state: AgentState) -> dict[str, Any]:
        ctx = await checked_context(services.confine)
        program = state["program"]
        thread_id = str(get_config().get("configurable", {}).get("thread_id", ""))
        if services.confine or is_caller_context(ctx):  # written only in the run's folder under the renders folder
            path = await asyncio.to_thread(served_output_path, ctx, thread_id, served_image_name(ctx, thread_id))
            return {"render": await render_program(services, ctx, program, path, exclusive=True)}
        return {"render": await render_program(services, ctx, program, output_path(ctx, thread_id))}

    return render


async def render_program(services: Services, ctx: AgentContext, program: Program, path: Path, *,
                         exclusive: bool = False) -> RenderResult:
    """One program through the context's renderer into ``path``, with the progress events;
    a failure of the backend is the result, never an exception (the render-only graph,
    ``genevolve_graph.serving.render_graph``, shares this with the agent's render node).

    ``exclusive`` (a caller's run): the renderer writes a private staging file beside
    ``path``, which then takes the name ``path`` without replacing anything but an earlier
    image of the same run's folder (``util.file_modes.publish_file``). Whatever a renderer
    does with the path it is given, it cannot replace a file it did not create."""
    emit("render_started", renderer=ctx.renderer, path=str(path))
    target = path
    if exclusive:
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        target = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.partial{path.suffix}")
    try:
        renderer = await services.aget_renderer(ctx)
        result = await renderer.render(program, target, seed=ctx.seed)
        if exclusive:
            result = await asyncio.to_thread(_publish, result, target, path)
    except Exception as exc:  # noqa: BLE001 - a render failure is recorded, not raised
        result = RenderResult(success=False, backend=ctx.renderer, error=f"{type(exc).__name__}: {exc}")
    finally:
        if exclusive:
            await asyncio.to_thread(target.unlink, missing_ok=True)
    emit("render_done", success=result.success, path=result.output_path, error=result.error)
    return result


def _publish(result: RenderResult, staging: Path, path: Path) -> RenderResult:
    if not result.success:
        return result
    if not staging.is_file():
        return result.model_copy(update={"success": False, "output_path": None,
                                         "error": f"the renderer reported success but wrote no image at {staging}"})
    try:
        publish_file(staging, path, replace_regular=True)  # the run's own folder: an earlier render of this run
    except OSError as exc:  # a folder or a link stands there, or the disk refused
        why = exc.strerror or str(exc)
        return result.model_copy(update={"success": False, "output_path": None,
                                         "error": f"the image cannot be written at {path}: {why}; nothing was replaced"})
    return result.model_copy(update={"output_path": os.fspath(path)})
