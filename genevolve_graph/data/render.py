"""Stage 4, render: the ground-truth candidates' programs rendered into GT images.

The seeded selection (``split.select_gt``) picks ``split.gt_fraction`` of the filtered
trajectories; the batch render stage renders their programs with the recipe's generator
(any backend of the registry) into ``DIR/render/images/<id>.png``. A render failure is the
renderer's, recorded as an infrastructure failure.

With ``data build --server URL`` the renders are background runs of the render graph on that
LangGraph Server (the executor of ``render --server``); the images are written there, and
the visual filter and the split read them at each record's ``output_path`` (a disk this
machine shares with the server, as with ``langgraph dev`` on the same machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genevolve_graph.core.context import AgentContext
from genevolve_graph.data import batch_adapter as engine
from genevolve_graph.data.layout import KEPT, outcome
from genevolve_graph.data.recipes import Recipe
from genevolve_graph.data.split import select_gt


def render_context(recipe: Recipe, root: Path) -> AgentContext:
    return AgentContext(renderer=recipe.render.renderer, output_dir=str((root / "render" / "images").resolve()),
                        seed=recipe.render.seed, options=dict(recipe.render.options))


async def run_render(recipe: Recipe, root: Path, *, resume: bool | None, progress: bool, renderer: Any = None,
                     retry_infra: bool = False, server: str = "", executor: Any = None,
                     server_output_dir: str = "") -> engine.StageRun:
    path = root / "filter" / "results.jsonl"
    kept = engine.read_items(path, option="the filter stage's output (run --stages filter first)",
                             keep=lambda data: outcome("filter", data)[0] == KEPT)
    selection = select_gt(recipe, root, [row.key for row in kept])
    chosen = set(selection["gt"])
    todo = [engine.move_item(row, position) for position, row in enumerate(r for r in kept if r.key in chosen)]
    return await engine.render_items(todo, render_context(recipe, root), out_dir=root / "render", concurrency=recipe.render.concurrency,
                                     resume=resume, progress=progress, input_path=str(path),
                                     settings={"recipe": recipe.name, "gt_fraction": recipe.split.gt_fraction, "split_seed": recipe.split.seed},
                                     renderer=renderer, retry_infra=retry_infra, server=server, executor=executor,
                                     server_output_dir=server_output_dir)
