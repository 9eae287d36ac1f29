"""``data build``: the stages in order, each on the previous stage's output.

A stage runs only when the stage before it is complete (``stage.json`` in its folder,
written once every item is recorded). Every stage resumes: rerunning the same command
continues the first unfinished stage and skips the finished ones' items.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from genevolve_graph.data import batch_adapter as engine
from genevolve_graph.data.layout import STAGE_DONE, STAGES
from genevolve_graph.data.recipes import Recipe, RecipeError

PREVIOUS = {stage: STAGES[i - 1] if i else None for i, stage in enumerate(STAGES)}


class StageOrderError(RecipeError):
    """A stage was asked for before the stage it reads from is complete."""


@dataclass
class Services:
    """Injected parts (tests, notebooks, Python callers); None means: built from the recipe."""

    expander: Any = None
    """A ``RequestExpander`` (or any object with ``async expand(recipe, cell, count)``)."""
    chat_model: Any = None
    """A LangChain chat model for the expander (instead of the recipe's endpoint)."""
    embedder: Any = None
    audit_judge: Any = None
    visual_judge: Any = None
    renderer: Any = None
    graph_services: dict[str, Any] = field(default_factory=dict)
    """Passed to ``build_graph`` for the teacher (a policy, search backends...)."""


@dataclass
class BuildOptions:
    stages: tuple[str, ...] = STAGES
    max_samples: int | None = None
    resume: bool | None = None
    progress: bool = True
    checkpoint: str | None = None
    retry_infra: bool = False
    """Run again the items a stage recorded as infrastructure failures (after an outage)."""
    server: str = ""
    """A LangGraph Server the trajectories and render stages run on (``--server``); empty: here.
    ``checkpoint`` then names the database that server's checkpointer writes, for the split."""
    executors: dict[str, Any] = field(default_factory=dict)
    """With ``server``: the executor of each stage that runs there (``trajectories``,
    ``render``), built as ``batch --server`` builds it."""
    server_output_dir: str = ""
    """With ``server``: the image folder on the server (``--server-output-dir``)."""
    server_roots: tuple[str, ...] = ()
    """With ``server``: folders of the server's files shared with this machine at the same
    paths (``--server-root``); its records may name files only there (``data.server_files``)."""


@dataclass
class StageOutcome:
    stage: str
    run: engine.StageRun | None
    counts: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return self.run.exit_code if self.run is not None else 0

    @property
    def complete(self) -> bool:
        return self.run is None or self.run.complete


def parse_stages(text: str | list[str] | None) -> tuple[str, ...]:
    """``requests,trajectories`` or a list; ``all`` (default) is every stage. Kept in pipeline order."""
    if not text:
        return STAGES
    names = [n.strip() for part in ([text] if isinstance(text, str) else text) for n in part.split(",") if n.strip()]
    if names == ["all"]:
        return STAGES
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise RecipeError(f"unknown stage {unknown[0]!r} (--stages); choose from {', '.join(STAGES)} (comma-separated) or all")
    return tuple(s for s in STAGES if s in names)


def is_complete(root: Path, stage: str) -> bool:
    if stage == "split":
        return (root / "split.json").exists()
    return (root / stage / STAGE_DONE).exists()


def mark_complete(root: Path, stage: str, run: engine.StageRun | None, extra: dict[str, Any] | None = None) -> None:
    payload = {"stage": stage, "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "items": len(run.records) if run is not None else None, **(extra or {})}
    engine.write_json_atomic(root / stage / STAGE_DONE, payload)


def clear_complete(root: Path, stage: str) -> None:
    (root / stage / STAGE_DONE).unlink(missing_ok=True)


def _judge(config: Any, injected: Any) -> Any:
    if injected is not None:
        return injected
    if config is None:
        return None
    if not config.base_url or not config.model:
        raise RecipeError("a judge in the recipe needs base_url and model (an OpenAI-compatible endpoint)")
    if config.api_key_env and not config.api_key():
        raise RecipeError(f"judge api_key_env names {config.api_key_env}, which is not set; export it first")
    from genevolve_graph.data.judges import make_client

    return make_client(config)


def _checkpoint_of(root: Path, given: str | None) -> str:
    if given:
        return given
    manifest = root / "trajectories" / "run.json"
    url = engine.recorded_checkpoint(root / "trajectories")
    if not url:
        raise StageOrderError(f"{manifest} names no checkpointer; run --stages trajectories first")
    if "***" in url:
        raise RecipeError(f"the trajectories are in {url}; pass that URL with --checkpoint (passwords are not stored)")
    if url.startswith(("http://", "https://")):
        raise RecipeError(f"the trajectories ran on the LangGraph Server {url}, and the split exports them from the database that "
                          "server's checkpointer writes: pass it with --checkpoint (sqlite:///PATH of the server's GENEVOLVE_TRACE_DB "
                          "when it runs langgraph.studio.json on a disk this machine reads, or the database of the checkpointer "
                          "its langgraph.json names)")
    return url


def _on_server(options: BuildOptions, recipe: Recipe, stage: str) -> Any:
    """The stage's ``--server`` executor, its records confined to the shared folders (or None: here)."""
    if not options.server:
        return None
    from genevolve_graph.data.server_files import SharedFilesOnly, shared_roots

    if stage not in options.executors:
        raise RecipeError(f"BuildOptions.server is set but executors has no {stage!r} executor; build one with "
                          "genevolve_graph.batch.executors.executor_for(server=..., concurrency=..., assistant=...)")
    roots = shared_roots(server_roots=options.server_roots, server_output_dir=options.server_output_dir,
                         image_dir=recipe.resolve(recipe.teacher.image_dir))
    return SharedFilesOnly(options.executors[stage], roots)


async def build(recipe: Recipe, root: Path, options: BuildOptions, services: Services | None = None,
                notify: Callable[[str], None] = print) -> list[StageOutcome]:
    """Run the asked stages in order; stops at the first stage that does not complete."""
    services = services or Services()
    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    outcomes: list[StageOutcome] = []
    for stage in options.stages:
        before = PREVIOUS[stage]
        if before is not None and not is_complete(root, before):
            raise StageOrderError(f"the {stage} stage reads the {before} stage's output, which is not complete in {root}; "
                                  f"run --stages {before} first")
        notify(f"== {stage}")
        outcome = await run_stage(stage, recipe, root, options, services)
        outcomes.append(outcome)
        if outcome.run is not None:
            for line in outcome.run.summary:
                notify(line)
        if not outcome.complete:
            clear_complete(root, stage)
            break
        if stage != "split":
            mark_complete(root, stage, outcome.run, outcome.counts)
    return outcomes


async def run_stage(stage: str, recipe: Recipe, root: Path, options: BuildOptions, services: Services) -> StageOutcome:
    common = {"resume": options.resume, "progress": options.progress, "retry_infra": options.retry_infra}
    if stage == "requests":
        from genevolve_graph.data.expander import RequestExpander, make_chat_model
        from genevolve_graph.data.requests import run_requests

        owned = None if (services.expander or services.chat_model) else make_chat_model(recipe.expander)
        expander = services.expander or RequestExpander(services.chat_model or owned, language=recipe.language)
        embedder = services.embedder
        if embedder is None and recipe.dedup.enabled:
            from genevolve_graph.data.dedup import load_embedder

            local = Path(recipe.resolve(recipe.dedup.model))
            embedder = load_embedder(str(local) if local.exists() else recipe.dedup.model)
        try:
            run = await run_requests(recipe, root, expander=expander, embedder=embedder, max_samples=options.max_samples, **common)
        finally:
            client = getattr(owned, "http_async_client", None)
            if client is not None:
                await client.aclose()
        return StageOutcome(stage, run)
    if stage == "trajectories":
        from genevolve_graph.data.trajectories import run_trajectories

        run, url = await run_trajectories(recipe, root, checkpoint=options.checkpoint, max_samples=options.max_samples,
                                          services=services.graph_services or None, server=options.server,
                                          executor=_on_server(options, recipe, "trajectories"), **common)
        return StageOutcome(stage, run, {"checkpoint": engine.recorded_checkpoint(root / "trajectories")})
    if stage == "filter":
        from genevolve_graph.data.filter import run_filter

        client = _judge(recipe.audit_judge(), services.audit_judge) if recipe.filter.audit.enabled else None
        return StageOutcome(stage, await run_filter(recipe, root, client=client, **common))
    if stage == "render":
        from genevolve_graph.data.render import run_render

        return StageOutcome(stage, await run_render(recipe, root, renderer=services.renderer, server=options.server,
                                                    executor=_on_server(options, recipe, "render"),
                                                    server_output_dir=options.server_output_dir, **common))
    if stage == "visual-filter":
        from genevolve_graph.data.visual_filter import run_visual_filter

        client = _judge(recipe.visual_judge(), services.visual_judge) if recipe.visual_filter.enabled else None
        return StageOutcome(stage, await run_visual_filter(recipe, root, client=client, **common))
    if stage == "split":
        from genevolve_graph.data.split import write_split

        counts = write_split(recipe, root, checkpoint=_checkpoint_of(root, options.checkpoint))
        return StageOutcome(stage, None, counts)
    raise ValueError(stage)
