"""Stage 2: render the programs of a stage-1 run, recorded and resumable.

The program of a row is rebuilt from its ``gen_prompt`` and ``reference_images`` (with
their ``local_path``) and handed to the renderer the registry names, one renderer for all
rows. Images are named by row id (``images/<id>.png``). A row without a program (its
rollout did not answer) is rendered from its original request with no references, as the
reference implementation's renderer does, unless ``fallback="skip"``; ``render_source``
says which was used.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from genevolve_graph.batch.engine import RunFolder, StageReport, StopController, open_run_folder, redact_options, run_session
from genevolve_graph.batch.rows import BatchRow, file_stem
from genevolve_graph.context import AgentContext
from genevolve_graph.redaction import redact_text
from genevolve_graph.state import Program, Reference, RenderResult

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
) -> StageReport:
    """Render every row not yet recorded; ``renderer`` replaces the one ``ctx`` names."""
    if options.fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, not {options.fallback!r}")
    folder = folder or prepare_renders(rows, ctx, options)
    try:
        return await _renders(rows, ctx, options, folder, controller, renderer)
    finally:
        folder.release()


@dataclass
class RenderStage:
    """Stage 2 as a row function for the engine: one renderer for all rows (closed at the end)."""

    ctx: AgentContext
    renderer: Any
    out_dir: Path
    fallback: str = "prompt"

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

    async def render_row(self, row: BatchRow) -> dict[str, Any]:
        started = time.monotonic()
        name, seed = self.backend, self.ctx.seed
        try:
            program = program_of(row.data)
        except ProgramError as exc:
            return render_record(row, RenderResult(success=False, backend=name, error=f"bad program in the input: {exc}"), None, seed)
        source = "program"
        if program is None:
            if self.fallback == "skip":
                why = f"no program (termination: {row.data.get('termination')}); --fallback prompt renders the request instead"
                return render_record(row, RenderResult(success=False, backend=name, error=why), None, seed)
            program, source = Program(gen_prompt=row.prompt, reference_images=[]), "prompt"
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
        return [f"images: {folder.path / 'images'}"]


async def _renders(rows: list[BatchRow], ctx: AgentContext, options: RenderOptions, folder: RunFolder,
                   controller: StopController | None, renderer: Any) -> StageReport:
    from genevolve_graph.batch.local import LocalExecutor
    from genevolve_graph.generators.registry import make_renderer

    stage = RenderStage(ctx, renderer or make_renderer(ctx), folder.path, options.fallback)
    return await run_session(stage, rows, folder, LocalExecutor(options.concurrency), grace=options.grace,
                             progress=options.progress, controller=controller)


def run_renders(rows: list[BatchRow], ctx: AgentContext, options: RenderOptions) -> StageReport:
    return asyncio.run(arun_renders(rows, ctx, options))
