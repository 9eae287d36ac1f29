"""Stage 3, filter: programmatic checks, then the VLM audit, per kept trajectory.

Every trajectory the teacher answered is one item of ``DIR/filter/``. All five checks run
(each failing check is recorded, so every check's count is known); the first failing one is
the drop reason. Trajectories that pass every check go to the audit judge; its three scores
are compared with the recipe's thresholds. A judge that keeps failing (or an unreadable
reference image) is an infrastructure failure, recorded as ``infra_error``, never a drop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genevolve_graph.data import batch_adapter as engine
from genevolve_graph.data.checks import run_checks
from genevolve_graph.data.layout import DROPPED, INFRA, KEPT, trajectory_outcome
from genevolve_graph.data.recipes import Recipe, RecipeError

STAGE = "data-filter"


def kept_trajectories(root: Path) -> list[engine.Item]:
    path = root / "trajectories" / "results.jsonl"
    return engine.read_items(path, option="the trajectories stage's output (run --stages trajectories first)",
                             keep=lambda data: trajectory_outcome(data)[0] == KEPT)


def make_worker(recipe: Recipe, client: Any):
    from genevolve_graph.data.judges import audit_trajectory, audit_verdict
    from genevolve_graph.evaluation.images import ImageLoadError
    from genevolve_graph.evaluation.judge_client import JudgeError

    config = recipe.filter

    async def worker(item: engine.Item) -> dict[str, Any]:
        record = dict(item.data)
        failed = run_checks(record, config)
        details: dict[str, Any] = {"failed_checks": failed, "audit": None}
        if failed:
            return {**record, "filter_status": DROPPED, "filter_reason": next(iter(failed)), "filter_error": None, "filter": details}
        if client is None:
            return {**record, "filter_status": KEPT, "filter_reason": None, "filter_error": None, "filter": details}
        try:
            scores = await audit_trajectory(client, record)
        except ImageLoadError as exc:  # a reference the generator could not read either: bad data
            return {**record, "filter_status": DROPPED, "filter_reason": "unreadable_reference_image", "filter_error": str(exc)[:500], "filter": details}
        except JudgeError as exc:
            return {**record, "filter_status": INFRA, "filter_reason": "audit_judge_error", "filter_error": str(exc)[:500], "filter": details}
        details["audit"] = scores.to_json()
        reason = audit_verdict(scores, config.audit)
        return {**record, "filter_status": DROPPED if reason else KEPT, "filter_reason": reason, "filter_error": None, "filter": details}

    return worker


async def run_filter(recipe: Recipe, root: Path, *, client: Any, resume: bool | None, progress: bool,
                     retry_infra: bool = False) -> engine.StageRun:
    if recipe.filter.audit.enabled and client is None:
        raise RecipeError("the audit needs a judge: set filter.audit.judge or judge in the recipe (or filter.audit.enabled: false)")
    items = kept_trajectories(root)
    settings = {"recipe": recipe.name, "filter": recipe.filter.model_dump(exclude={"audit": {"judge"}}),
                "judge": getattr(client, "model", None)}
    try:
        return await engine.run_items(
            STAGE, items, make_worker(recipe, client if recipe.filter.audit.enabled else None), out_dir=root / "filter",
            settings=settings, concurrency=recipe.filter.concurrency, resume=resume, progress=progress,
            # only infrastructure errors count as failed: a quality drop is an outcome (issue 24)
            is_failure=lambda r: r.get("filter_status") == INFRA, outcome_field="filter_status", error_field="filter_error",
            input_path=str(root / "trajectories" / "results.jsonl"), retry_infra=retry_infra,
        )
    finally:
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()
