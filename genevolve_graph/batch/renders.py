"""Stage 2: render the programs of a stage-1 run, recorded and resumable.

The program of a row is rebuilt from its ``gen_prompt`` and ``reference_images`` (with
their ``local_path``) and handed to the renderer the registry names, one renderer for all
rows. Images are named by row id (``images/<id>.png``). A row without a program (its
rollout did not answer) is rendered from its original request with no references, as the
reference implementation's renderer does, unless ``fallback="skip"``; ``render_source``
says which was used.

With ``render --server URL`` every row is a background run of the render-only graph
(``genevolve_graph.serving.render_graph``, ``genevolve_render`` in langgraph.json) through
``batch.server.ServerExecutor``: ``RenderStage`` is also a ``RemoteStage``. References this
machine holds travel inline (data URIs, scaled as for a render service); the others are left
to the server to find by ``local_path`` (under its allowed roots). The image is written on
the server, in ``<server renders folder>/<row's thread>/<row id>.png`` (the renders folder
is the server operator's ``GENEVOLVE_RENDERS_DIR``; ``--server-output-dir`` may name a folder
inside it); the record's ``output_path`` is that path on the server's disk, and
``render_server`` / ``render_thread`` say where.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from genevolve_graph.util import event_loop
from genevolve_graph.batch.engine import Executor, RunFolder, StageReport, StopController, open_run_folder, redact_options, run_session
from genevolve_graph.batch.rows import BatchRow
from genevolve_graph.util.paths import file_stem
from genevolve_graph.core.context import AgentContext
from genevolve_graph.safety.redaction import redact_text, redact_url
from genevolve_graph.core.state import Program, Reference, RenderResult

STAGE = "renders"
FALLBACKS = ("prompt", "skip")
REFERENCE_FIELDS = ("img_id", "note", "local_path", "url", "title", "page_url")


def is_failure(record: dict[str, Any]) -> bool:
    return not record.get("success")


class ProgramError(ValueError):
    """A stage-1 row whose program fields cannot be read."""


def program_of(row: dict[str, Any]) -> Program | None:
    """The row's prompt-reference program, or None when the rollout produced none."""
    gen_prompt = row.get("gen_prompt")
    if gen_prompt is None or (isinstance(gen_prompt, str) and not gen_prompt.strip()):
        return None
    if not isinstance(gen_prompt, str):
        raise ProgramError(f"'gen_prompt' must be text, got {type(gen_prompt).__name__}")
    refs = row.get("reference_images") or []
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ProgramError("'reference_images' must be a list of objects with img_id and local_path")
    references = []
    for ref in refs:
        values = {name: ref.get(name) for name in REFERENCE_FIELDS if ref.get(name) is not None}
        values = {name: str(value) for name, value in values.items()}
        if "img_id" not in values:
            raise ProgramError("a reference image has no 'img_id'")
        references.append(Reference(**values))
    return Program(gen_prompt=gen_prompt, reference_images=references)


@dataclass
class RenderOptions:
    out_dir: Path
    concurrency: int = 4
    resume: bool | None = None
    fallback: str = "prompt"
    input_path: str = ""
    input_digest: str = ""
    grace: float = 30.0
    progress: bool = True
    force_input: bool = False
    extra_settings: dict[str, Any] = field(default_factory=dict)
    server_url: str = ""
    """A LangGraph Server that renders the rows (``--server``); empty: render here."""
    server_output_dir: str = ""
    """The image folder on the server (``--server-output-dir``); empty: the server's default."""


def image_path(out_dir: Path, key: str) -> Path:
    return Path(out_dir) / "images" / f"{file_stem(key)}.png"


def render_record(row: BatchRow, result: RenderResult, source: str | None, seed: int) -> dict[str, Any]:
    """The stage-2 result of DESIGN.md §4: the stage-1 row plus the render's fields."""
    record = {"id": row.data["id"], **row.data}
    record.update(
        output_path=result.output_path if result.success else None,
        success=bool(result.success),
        render_error=None if result.success else redact_text(result.error or "the renderer reported a failure without a message"),
        backend=result.backend,
        render_source=source,
        render_seconds=round(result.seconds, 3) if result.seconds is not None else None,
        seed=seed,
    )
    if result.notes:
        record["render_notes"] = list(result.notes)
    return record


def prepare_renders(rows: list[BatchRow], ctx: AgentContext, options: RenderOptions) -> RunFolder:
    settings = {"renderer": ctx.renderer, "seed": ctx.seed, "fallback": options.fallback,
                "options": redact_options({k: v for k, v in sorted(ctx.options.items()) if k != "output_name"}),
                **options.extra_settings}
    folder = open_run_folder(options.out_dir, stage=STAGE, rows=rows, resume=options.resume, input_path=options.input_path,
                             input_digest=options.input_digest, shard=None, settings=settings, force_input=options.force_input)
    try:
        if not options.server_url:  # with --server the images are written on the server
            (folder.path / "images").mkdir(parents=True, exist_ok=True)
        folder.save_manifest()
    except BaseException:
        folder.release()
        raise
    return folder


async def arun_renders(
    rows: list[BatchRow],
    ctx: AgentContext,
    options: RenderOptions,
    *,
    folder: RunFolder | None = None,
    controller: StopController | None = None,
    renderer: Any = None,
    executor: Executor | None = None,
) -> StageReport:
    """Render every row not yet recorded; ``renderer`` replaces the one ``ctx`` names and
    ``executor`` the local one (a ``ServerExecutor`` for ``options.server_url``)."""
    if options.fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, not {options.fallback!r}")
    folder = folder or prepare_renders(rows, ctx, options)
    try:
        return await _renders(rows, ctx, options, folder, controller, renderer, executor)
    finally:
        folder.release()


@dataclass
class RenderStage:
    """Stage 2 as a row function for the engine: one renderer for all rows (closed at the end)."""

    ctx: AgentContext
    renderer: Any
    out_dir: Path
    fallback: str = "prompt"
    run_id: str = ""
    server_url: str = ""
    server_output_dir: str = ""

    name = STAGE
    outcome_field = "success"
    error_field = "render_error"

    @property
    def backend(self) -> str:
        return getattr(self.renderer, "name", self.ctx.renderer)

    def is_failure(self, record: dict[str, Any]) -> bool:
        return is_failure(record)

    def failure(self, row: BatchRow, message: str) -> dict[str, Any]:
        return render_record(row, RenderResult(success=False, backend=self.backend, error=message), None, self.ctx.seed)

    def program_for(self, row: BatchRow) -> tuple[Program | None, str | None, dict[str, Any] | None]:
        """``(program, source, None)`` to render, or ``(None, None, record)`` for a row with
        nothing to render (a bad program, or none with ``fallback="skip"``)."""
        name, seed = self.backend, self.ctx.seed
        try:
            program = program_of(row.data)
        except ProgramError as exc:
            return None, None, render_record(row, RenderResult(success=False, backend=name, error=f"bad program in the input: {exc}"), None, seed)
        if program is not None and server_made(row) and not self.server_url:
            held = [ref.img_id for ref in program.reference_images if ref.local_path]
            if held:
                why = (f"reference {held[0]} was found by a LangGraph Server run (batch --server): its local_path is a file "
                       "on that server, which this machine does not read; render these rows there with render --server URL")
                return None, None, render_record(row, RenderResult(success=False, backend=name, error=why), None, seed)
        if program is None:
            if self.fallback == "skip":
                why = f"no program (termination: {row.data.get('termination')}); --fallback prompt renders the request instead"
                return None, None, render_record(row, RenderResult(success=False, backend=name, error=why), None, seed)
            return Program(gen_prompt=row.prompt, reference_images=[]), "prompt", None
        return program, "program", None

    async def render_row(self, row: BatchRow) -> dict[str, Any]:
        started = time.monotonic()
        name, seed = self.backend, self.ctx.seed
        program, source, record = self.program_for(row)
        if program is None:
            return record  # type: ignore[return-value]
        try:
            result = await self.renderer.render(program, image_path(self.out_dir, row.key), seed=seed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a render failure is the row's outcome
            result = RenderResult(success=False, backend=name, error=f"{type(exc).__name__}: {exc}")
        if result.seconds is None:
            result = result.model_copy(update={"seconds": time.monotonic() - started})
        return render_record(row, result, source, seed)

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Callable[[BatchRow], Awaitable[dict[str, Any]]]]:
        try:
            yield self.render_row
        finally:
            close = getattr(self.renderer, "aclose", None)
            if callable(close):
                await close()

    def report_lines(self, folder: RunFolder) -> list[str]:
        if self.server_url:
            where = self.server_output_dir or "its renders folder"
            return [f"images: on the LangGraph Server {redact_url(self.server_url)}, in {where}/<thread of each row>/ "
                    "(each record's output_path is the file on the server)"]
        return [f"images: {folder.path / 'images'}"]

    # ------------------------------------------------ on a LangGraph Server (batch.server)

    def thread_label(self, row: BatchRow) -> str:
        return f"{self.run_id}:{row.key}"

    def remote_skip(self, row: BatchRow) -> dict[str, Any] | None:
        """The record of a row with nothing to render: no server run for it."""
        return self.program_for(row)[2]

    def remote_input(self, row: BatchRow) -> dict[str, Any]:
        """The render graph's input (blocking: it reads the reference files)."""
        program, _, _ = self.program_for(row)
        assert program is not None  # remote_skip took the others
        # a server's record names files on the server: sent by path, for the server to check under its roots
        inline = {} if server_made(row) else {ref.img_id: uri for ref in program.reference_images if (uri := inline_reference(ref))}
        return {"program": program.model_dump(), "reference_data": inline, "row_id": row.key, "batch_run": self.run_id}

    def remote_context(self) -> dict[str, Any]:
        from genevolve_graph.batch.server import context_for_server

        return context_for_server(self.ctx.with_updates(output_dir=self.server_output_dir))

    def remote_record(self, row: BatchRow, thread_id: str, values: dict[str, Any], seconds: float) -> dict[str, Any]:
        """The stage-2 record from the server thread's final state; the image is on the server."""
        _, source, _ = self.program_for(row)
        raw = values.get("render")
        result = (RenderResult.model_validate(raw) if raw else
                  RenderResult(success=False, backend=self.backend, error="the server's run ended without a render result"))
        if result.seconds is None:
            result = result.model_copy(update={"seconds": seconds})
        problem = self.foreign_output(row, thread_id, result.output_path) if result.success else None
        if problem:
            result = RenderResult(success=False, backend=result.backend, error=problem, seconds=result.seconds)
        record = render_record(row, result, source, self.ctx.seed)
        record.update(render_server=redact_url(self.server_url), render_thread=thread_id)
        return record

    def foreign_output(self, row: BatchRow, thread_id: str, output_path: str | None) -> str | None:
        """Why the server's ``output_path`` is not this row's image (None when it is).

        A server's reply is checked like a caller's input: the path must be the file the
        render graph makes for this row (``<folder>/<thread>/<row id>.png``, inside
        ``--server-output-dir`` when given), or ``evaluate`` would later read, score and send
        to a judge whatever file the server named."""
        from pathlib import PurePath

        expected = f"<{self.server_output_dir or 'renders folder'}>/{file_stem(thread_id)}/{file_stem(row.key)}.png"
        if not output_path:
            return f"the server reported success without an output_path; expected {expected}"
        path = PurePath(output_path)
        fine = (path.is_absolute() and ".." not in path.parts and path.name == f"{file_stem(row.key)}.png"
                and path.parent.name == file_stem(thread_id))
        if fine and self.server_output_dir:
            fine = path.parent.parent == PurePath(self.server_output_dir)
        if fine:
            return None
        return (f"the server's reply names output_path {output_path!r}, which is not this row's image ({expected}); "
                "the record is refused, check the server at --server")


def server_made(row: BatchRow) -> bool:
    """A stage-1 record that a LangGraph Server made (``batch --server``): its references'
    ``local_path`` are paths on that server, data from the server, never files to read here."""
    return bool(row.data.get("server_thread"))


def inline_reference(reference: Reference) -> str | None:
    """A reference as a data URI when this machine holds its file (the server may not share
    this disk), scaled as for a render service; ``None`` leaves ``local_path`` to the server,
    which checks it against its own roots. The server decodes what it gets under its caps."""
    from genevolve_graph.generators.base import RenderError
    from genevolve_graph.generators.references import LOCAL_MAX_REFERENCE_BYTES, prepare_reference, read_reference_bytes
    from genevolve_graph.safety.imaging import UnsafeImageError, to_data_uri

    if not reference.local_path:
        return None
    try:
        prepared = prepare_reference(read_reference_bytes(reference, max_bytes=LOCAL_MAX_REFERENCE_BYTES))
    except (RenderError, UnsafeImageError, OSError):
        return None
    return to_data_uri(prepared.data, prepared.mime)


async def _renders(rows: list[BatchRow], ctx: AgentContext, options: RenderOptions, folder: RunFolder,
                   controller: StopController | None, renderer: Any, executor: Executor | None) -> StageReport:
    from genevolve_graph.batch.local import LocalExecutor
    from genevolve_graph.generators.registry import make_renderer

    if renderer is None and not options.server_url:  # on a server, the server builds its own
        renderer = make_renderer(ctx)
    stage = RenderStage(ctx, renderer, folder.path, options.fallback, run_id=folder.run_id, server_url=options.server_url,
                        server_output_dir=options.server_output_dir)
    return await run_session(stage, rows, folder, executor or LocalExecutor(options.concurrency), grace=options.grace,
                             progress=options.progress, controller=controller)


def run_renders(rows: list[BatchRow], ctx: AgentContext, options: RenderOptions) -> StageReport:
    return event_loop.run(arun_renders(rows, ctx, options))
