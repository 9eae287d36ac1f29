"""The render-only graph, ``START → render → END``: stage 2 as runs of a LangGraph Server.

``langgraph.json`` serves it as ``genevolve_render`` (:func:`make_render_graph`), and
``genevolve-graph render --server URL`` submits every program row to it as a background run
(``batch.renders.RenderStage`` through ``batch.server.ServerExecutor``). It renders with the
same renderers as the agent's render node (``nodes.render.render_program``), built from the
run's context on the server.

Input (``RenderInput``): ``program`` = ``{gen_prompt, reference_images}``, ``reference_data``
(``{img_id: data URI}``, references sent inline), ``row_id`` and ``batch_run``. Output:
``render`` (a ``RenderResult``) and ``program`` with the server's reference paths.

Where the image goes, on the server's file system: for a caller's run (the served graph
confines every run) ``<renders folder>/<run folder>/<row id>.png``. The renders folder is
the operator's (``GENEVOLVE_RENDERS_DIR``, default the cache's ``renders``; a caller's
``output_dir``, ``render --server-output-dir``, may only name a folder inside it), the run
folder is named by the server after the run's thread (one row of one batch run), and the
row id is cleaned into a file name (``util.paths.file_stem``). The file is created
exclusively, replacing at most an earlier image of the same thread. Unconfined (an
in-process graph with ``confine=False``): ``<output_dir>/<batch_run>/<row id>.png``. Without
a row id the file is named as the agent's render node names it (``output_name``, else
``<thread id>.png``).

Everything a caller sends is hostile (docs/security.md). A served graph confines every run:
the context is checked (``guard.check_caller_context``), the output file lands as above,
and a reference the caller names by ``local_path``,
which must also be a regular file that decodes as an image under the download caps. An
inline reference is decoded under the same caps before its bytes are written (as they are)
to ``<output_dir>/<batch_run>/references/<row id>/``. URLs are never fetched, there are at
most ``MAX_REFERENCES`` references, and the output never overwrites a reference. A refused
or broken input is the row's failed ``RenderResult`` naming the field, never a crash of the
server's run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import ValidationError
from typing_extensions import Required, TypedDict  # pydantic needs it on Python < 3.12 for the JSON schemas Studio shows

from genevolve_graph.core.context import AgentContext
from genevolve_graph.safety.file_guard import same_file
from genevolve_graph.util.file_modes import write_bytes_atomic
from genevolve_graph.core.guard import ContextRefused, OperatorSettings, is_caller_context, served_output_path
from genevolve_graph.safety.imaging import UnsafeImageError, data_uri_bytes, decode_image, probe_size, read_image_file
from genevolve_graph.nodes.common import checked_context, dual_node
from genevolve_graph.nodes.render import output_path, render_program, served_image_name
from genevolve_graph.nodes.services import Services
from genevolve_graph.core.state import MAX_NOTE_CHARS, Program, RenderResult

if TYPE_CHECKING:
    from langgraph_sdk.runtime import ServerRuntime

RENDER_GRAPH_NAME = "genevolve_render"
MAX_REFERENCES = 8
"""References one program may bring: a caller cannot make the server decode an unbounded number."""
MAX_TOTAL_PIXELS = 48_000_000
"""Pixels all references of one run may hold together (the render service's default too),
checked from the headers of inline references before any is decoded or stored."""
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}


class ReferenceInput(TypedDict, total=False):
    """One reference of the program, as a stage-1 result records it."""

    img_id: Required[str]
    note: str
    title: str
    url: str
    local_path: str
    """A file on the server (under its allowed roots), unless ``reference_data`` sends the image."""
    page_url: str


class ProgramInput(TypedDict, total=False):
    """The prompt-reference program to render (typed, so Studio and SDK clients see its fields)."""

    gen_prompt: Required[str]
    reference_images: list[ReferenceInput]
    """None or empty: a text-only program."""


class RenderInput(TypedDict, total=False):
    program: ProgramInput
    """``{"gen_prompt": str, "reference_images": [{"img_id", "note", "local_path", ...}]}``."""
    reference_data: dict[str, str]
    """References sent inline: ``{img_id: "data:image/...;base64,..."}`` (wins over ``local_path``)."""
    row_id: str
    """Names the image file (cleaned into a file name)."""
    batch_run: str
    """The batch run: the subfolder of the images (cleaned into a folder name)."""


class RenderOutput(TypedDict, total=False):
    row_id: str
    batch_run: str
    program: Program | None
    render: RenderResult | None


class RenderState(TypedDict, total=False):
    program: Any
    reference_data: dict[str, str]
    row_id: str
    batch_run: str
    render: RenderResult | None


class InputRefused(ValueError):
    """The run's input cannot be rendered; the message names the field and the fix."""


def image_file(ctx: AgentContext, thread_id: str, row_id: str, batch_run: str,
               settings: OperatorSettings | None = None) -> Path:
    """Where the row's image goes (see the module docstring); ``settings``: a caller's run,
    confined to the renders folder (blocking then: it resolves paths)."""
    from genevolve_graph.util.paths import file_stem

    if settings is not None:
        name = f"{file_stem(row_id)}.png" if row_id else served_image_name(ctx, thread_id)
        return served_output_path(ctx, thread_id, name, settings)
    default = output_path(ctx, thread_id)
    if not row_id:
        return default
    folder = default.parent / file_stem(batch_run) if batch_run else default.parent
    return folder / f"{file_stem(row_id)}.png"


def admit(state: dict[str, Any], ctx: AgentContext, thread_id: str, *, confined: bool) -> tuple[Program, Path]:
    """The program with every reference on this machine's disk, checked, and the output
    file; raises ``InputRefused`` naming what is wrong. Blocking: runs in a worker thread."""
    from genevolve_graph.util.paths import file_stem

    settings = OperatorSettings.from_env() if confined else None
    row_id, batch_run = _text(state, "row_id"), _text(state, "batch_run")
    try:
        path = image_file(ctx, thread_id, row_id, batch_run, settings)
    except ContextRefused as exc:
        raise InputRefused(str(exc)) from None
    raw = state.get("program")
    if not isinstance(raw, dict):
        raise InputRefused("input 'program' must be an object {gen_prompt, reference_images}")
    try:
        program = Program.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputRefused(f"input program.{where}: {first['msg']}") from None
    if len(program.reference_images) > MAX_REFERENCES:
        raise InputRefused(f"input program has {len(program.reference_images)} reference images; at most {MAX_REFERENCES} are rendered")
    for ref in program.reference_images:
        if len(ref.note) > MAX_NOTE_CHARS:
            raise InputRefused(f"reference {ref.img_id}: its note has {len(ref.note):,} characters; at most {MAX_NOTE_CHARS} are accepted")
    inline = state.get("reference_data") or {}
    if not isinstance(inline, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in inline.items()):
        raise InputRefused("input 'reference_data' must map img_id to a data URI")
    ids = {ref.img_id for ref in program.reference_images}
    unknown = sorted(set(inline) - ids)
    if unknown:
        raise InputRefused(f"input reference_data names {unknown[0]!r}, which is not a reference of the program")
    stored = path.parent / "references" / path.stem
    spent = 0
    blobs: dict[str, bytes] = {}
    for ref in program.reference_images:  # headers first: nothing is decoded or written past the budget
        if ref.img_id in inline:
            blobs[ref.img_id], pixels = _inline_bytes(ref.img_id, inline[ref.img_id])
            spent = _spend(spent, pixels, ref.img_id)
    references = []
    for ref in program.reference_images:
        if ref.img_id in inline:
            local = _store_inline(ref.img_id, blobs[ref.img_id], stored / file_stem(ref.img_id))
        elif ref.local_path:
            local, pixels = _check_local(ref.img_id, ref.local_path, settings)
            spent = _spend(spent, pixels, ref.img_id)
        else:
            raise InputRefused(f"reference {ref.img_id}: no image; send it inline in reference_data or name a file on the server in local_path")
        if same_file(local, path):
            raise InputRefused(f"reference {ref.img_id}: {local} is the output file {path}; rendering would overwrite it")
        references.append(ref.model_copy(update={"local_path": str(local)}))
    return program.model_copy(update={"reference_images": references}), path


def _text(state: dict[str, Any], name: str) -> str:
    value = state.get(name)
    if value is None:
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InputRefused(f"input {name!r} must be text")
    return str(value)


def _spend(spent: int, pixels: int, img_id: str) -> int:
    """The run's pixel budget after one more reference (``MAX_TOTAL_PIXELS`` in all)."""
    spent += pixels
    if spent > MAX_TOTAL_PIXELS:
        raise InputRefused(f"reference {img_id}: the references hold more than {MAX_TOTAL_PIXELS:,} pixels together; "
                           "send fewer or smaller references")
    return spent


def _inline_bytes(img_id: str, uri: str) -> tuple[bytes, int]:
    """An inline reference's bytes and its pixel count from the header (nothing decoded yet)."""
    try:
        data = data_uri_bytes(uri)
        width, height = probe_size(data)
    except UnsafeImageError as exc:
        raise InputRefused(f"reference {img_id}: reference_data is not a usable image: {exc}") from None
    return data, width * height


def _store_inline(img_id: str, data: bytes, stem: Path) -> Path:
    """An inline reference, decoded under the download caps, written as it came."""
    try:
        fmt = decode_image(data, upright=False).format
    except UnsafeImageError as exc:
        raise InputRefused(f"reference {img_id}: reference_data is not a usable image: {exc}") from None
    target = stem.with_suffix(EXTENSIONS.get(fmt, ".img"))
    write_bytes_atomic(target, data)
    return target


def _check_local(img_id: str, local_path: str, settings: OperatorSettings | None) -> tuple[Path, int]:
    """A reference the caller names by path: under a read root or in the bundled image folder
    that the server's own ``local`` image search returns (when confined), a regular image file."""
    from genevolve_graph.tools.local_images import DEFAULT_IMAGE_DIR

    resolved = Path(local_path).expanduser().resolve()
    bundled = resolved.is_relative_to(DEFAULT_IMAGE_DIR)  # the server's own image search folder (package data)
    if settings is not None and settings.path_allowed(resolved) is None and not bundled:
        roots = ", ".join(str(r) for r in settings.roots)
        raise InputRefused(f"reference {img_id}: local_path {local_path!r} is refused: caller paths must stay under {roots}; "
                           "send the image inline in reference_data, or the server's operator can widen GENEVOLVE_ALLOWED_ROOTS")
    try:
        width, height = probe_size(read_image_file(resolved))
    except FileNotFoundError:
        raise InputRefused(f"reference {img_id}: local_path {local_path!r} does not exist on the server; send the image inline in reference_data") from None
    except (OSError, UnsafeImageError) as exc:
        raise InputRefused(f"reference {img_id}: local_path {local_path!r} is not a usable image: {exc}") from None
    return resolved, width * height


def make_render_program_node(services: Services):
    async def render(state: RenderState) -> dict[str, Any]:
        try:
            ctx = await checked_context(services.confine)
        except ContextRefused as exc:  # the row's recorded failure, naming the field
            return {"render": RenderResult(success=False, backend="", error=str(exc))}
        thread_id = str(get_config().get("configurable", {}).get("thread_id", ""))
        confined = services.confine or is_caller_context(ctx)
        try:
            program, path = await asyncio.to_thread(admit, dict(state), ctx, thread_id, confined=confined)
        except InputRefused as exc:
            return {"render": RenderResult(success=False, backend=ctx.renderer, error=str(exc))}
        return {"program": program, "render": await render_program(services, ctx, program, path, exclusive=confined)}

    return render


def build_render_graph(
    checkpointer: BaseCheckpointSaver | None = None, *, renderer: Any = None, confine: bool = True,
    name: str = RENDER_GRAPH_NAME,
) -> CompiledStateGraph:
    """The render-only graph. ``confine`` (default on: it is made to be served) checks every
    run as a caller's; ``renderer`` replaces the one the context names."""
    services = Services(renderer=renderer, confine=confine)
    builder = StateGraph(RenderState, context_schema=AgentContext, input_schema=RenderInput, output_schema=RenderOutput)
    builder.add_node("render", dual_node(make_render_program_node(services), "render"))
    builder.add_edge(START, "render")
    builder.add_edge("render", END)
    return builder.compile(checkpointer=checkpointer, name=name)


render_graph = build_render_graph()
"""For ``langgraph dev`` / a deployment (which bring their own checkpointer); every run confined."""


def make_render_graph(runtime: ServerRuntime) -> CompiledStateGraph:
    """The render graph, after checking the run's context as ``server.make_graph`` does (an
    unknown key or backend fails the run with a one-line error instead of being dropped)."""
    from genevolve_graph.serving.server import for_run

    return for_run(render_graph, runtime)


__all__ = ["RENDER_GRAPH_NAME", "MAX_REFERENCES", "MAX_TOTAL_PIXELS", "RenderInput", "RenderOutput", "build_render_graph", "make_render_graph",
           "render_graph", "image_file", "admit", "InputRefused"]
