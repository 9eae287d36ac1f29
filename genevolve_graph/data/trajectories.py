"""Stage 2, trajectories: the teacher agent (our graph driven by a strong model) plans a
program for every request, with real or local tools.

This is the batch rollout stage itself (``DIR/trajectories/`` is a batch run folder), so
every trajectory is one checkpointer thread (``<run id>:<request id>``; default
``sqlite:///DIR/trajectories/trace.sqlite``), a killed run continues each trajectory from
its last checkpoint, and the records carry the request's fields (hard constraints, cell,
benchmark fields) through.

With ``data build --server URL`` every trajectory is instead a background run of the graph
on that LangGraph Server, through the executor of ``batch --server`` (one server thread per
request, found again by its metadata on resume); the server's threads are the trace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genevolve_graph.core.context import AgentContext
from genevolve_graph.data import batch_adapter as engine
from genevolve_graph.data.layout import REQUESTS_FILE
from genevolve_graph.data.recipes import Recipe, RecipeError


def teacher_context(recipe: Recipe, root: Path, *, local: bool = True) -> AgentContext:
    """The agent settings of the recipe's teacher (paths resolved against the recipe).
    ``local=False``: the teacher runs on a LangGraph Server, which reads its own key."""
    teacher = recipe.teacher
    if teacher.policy == "openai" and (not teacher.base_url or not teacher.model):
        raise RecipeError("the recipe's teacher needs base_url and model (policy openai), or policy: rules for an offline run")
    if teacher.api_key_env and local:
        key = os.environ.get(teacher.api_key_env)
        if not key:
            raise RecipeError(f"teacher.api_key_env names {teacher.api_key_env}, which is not set; export it first")
        os.environ["OPENAI_API_KEY"] = key
    return AgentContext(
        policy=teacher.policy, base_url=teacher.base_url, model=teacher.model, protocol=teacher.protocol,
        temperature=teacher.temperature, top_p=teacher.top_p, max_tokens=teacher.max_tokens, max_rounds=teacher.max_rounds,
        max_tool_calls=teacher.max_tool_calls, n_max_reference_images=teacher.max_refs, max_retries=teacher.max_retries,
        retry_initial_delay=teacher.retry_delay, request_timeout=teacher.request_timeout, search=teacher.search,
        image_search=teacher.image_search, corpus=recipe.resolve(teacher.corpus), image_dir=recipe.resolve(teacher.image_dir),
        skills_dir=recipe.resolve(teacher.skills_dir), system_prompt_file=recipe.resolve(teacher.system_prompt_file),
        renderer="none", output_dir=str((root / "trajectories").resolve()), experiment=f"data:{recipe.name}",
        options=dict(teacher.options),
    )


async def run_trajectories(recipe: Recipe, root: Path, *, checkpoint: str | None, resume: bool | None, progress: bool,
                           max_samples: int | None, services: dict[str, Any] | None = None,
                           retry_infra: bool = False, server: str = "", executor: Any = None) -> tuple[engine.StageRun, str]:
    """The teacher over the requests; with ``server`` (and its ``executor``) on that
    LangGraph Server, where ``checkpoint`` is not the teacher's (it names the database the
    split reads the server's threads from)."""
    source = root / "requests" / REQUESTS_FILE
    rows = engine.read_items(source, option="the requests stage's output (run --stages requests first)")
    if max_samples is not None:
        rows = rows[:max_samples]
    ctx = teacher_context(recipe, root, local=not server)
    url = None if server else checkpoint or recipe.teacher.checkpoint or None
    if url == "memory":
        raise RecipeError("the teacher's checkpoint cannot be 'memory': the split reads the trajectories back; use sqlite:///PATH or postgresql://...")
    return await engine.teacher_rollouts(
        rows, ctx, out_dir=root / "trajectories", checkpoint=url, concurrency=recipe.teacher.concurrency, resume=resume,
        progress=progress, input_path=str(source), input_digest="", settings={"recipe": recipe.name, "max_samples": max_samples},
        services=services, retry_infra=retry_infra, server=server, executor=executor,
    )
