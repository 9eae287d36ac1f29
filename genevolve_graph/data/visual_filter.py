"""Stage 5, visual-filter: a VLM judge scores every ground-truth render on prompt
consistency, reference use, visual coherence and quality; renders below a threshold are
dropped with the dimension as the reason. A judge failure is an infrastructure failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genevolve_graph.data import batch_adapter as engine
from genevolve_graph.data.layout import DROPPED, INFRA, KEPT, outcome
from genevolve_graph.data.recipes import Recipe, RecipeError

STAGE = "data-visual-filter"


def make_worker(recipe: Recipe, client: Any):
    from genevolve_graph.data.judges import judge_render, visual_verdict
    from genevolve_graph.evaluation.images import ImageLoadError
    from genevolve_graph.evaluation.judge_client import JudgeError

    async def worker(item: engine.Item) -> dict[str, Any]:
        record = dict(item.data)
        if client is None:
            return {**record, "visual_status": KEPT, "visual_reason": None, "visual_error": None, "visual": None}
        try:
            scores = await judge_render(client, record, Path(record["output_path"]))
        except ImageLoadError as exc:  # the render (or a reference) cannot be read: the renderer's failure
            return {**record, "visual_status": INFRA, "visual_reason": "unreadable_image", "visual_error": str(exc)[:500], "visual": None}
        except JudgeError as exc:
            return {**record, "visual_status": INFRA, "visual_reason": "visual_judge_error", "visual_error": str(exc)[:500], "visual": None}
        reason = visual_verdict(scores, recipe.visual_filter.thresholds)
        return {**record, "visual_status": DROPPED if reason else KEPT, "visual_reason": reason, "visual_error": None, "visual": scores}

    return worker


async def run_visual_filter(recipe: Recipe, root: Path, *, client: Any, resume: bool | None, progress: bool,
                            retry_infra: bool = False) -> engine.StageRun:
    if recipe.visual_filter.enabled and client is None:
        raise RecipeError("the visual filter needs a judge: set visual_filter.judge or judge in the recipe (or visual_filter.enabled: false)")
    path = root / "render" / "results.jsonl"
    items = engine.read_items(path, option="the render stage's output (run --stages render first)",
                              keep=lambda data: outcome("render", data)[0] == KEPT)
    try:
        return await engine.run_items(
            STAGE, items, make_worker(recipe, client if recipe.visual_filter.enabled else None), out_dir=root / "visual-filter",
            settings={"recipe": recipe.name, "thresholds": recipe.visual_filter.thresholds, "judge": getattr(client, "model", None)},
            concurrency=recipe.visual_filter.concurrency, resume=resume, progress=progress,
            # only infrastructure errors count as failed: a quality drop is an outcome (issue 24)
            is_failure=lambda r: r.get("visual_status") == INFRA, outcome_field="visual_status", error_field="visual_error",
            input_path=str(path), retry_infra=retry_infra,
        )
    finally:
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()
