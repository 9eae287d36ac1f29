"""Run one trajectory end to end with a checkpointer, and collect its result.

Shared by ``genevolve-graph run``, the batch stage and notebooks. A thread that exists but
did not finish continues from its last checkpoint instead of restarting; a finished thread
is returned as it is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.base import BaseCheckpointSaver

from genevolve_graph.core.context import AgentContext
from genevolve_graph.agent.graph import build_graph, recursion_limit
from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.safety.redaction import redact_text, redact_value
from genevolve_graph.core.state import Program, RenderResult
from genevolve_graph.util.file_modes import mkstemp
from genevolve_graph.core.tracing import default_tags


@dataclass
class RunResult:
    thread_id: str
    request: str
    program: Program | None
    termination: str | None
    error: str | None
    rounds: int
    tool_calls: int
    repairs: list[str] = field(default_factory=list)
    render: RenderResult | None = None
    messages: list[BaseMessage] = field(default_factory=list)
    guide: dict[str, Any] | None = None
    """The Decision Guide the planner was given (``guidance="retrieve"``), else None."""

    def record(self) -> dict[str, Any]:
        """The stage-1 fields of DESIGN.md §4 (without the input row)."""
        program = self.program
        return {
            "prompt": self.request,
            "gen_prompt": program.gen_prompt if program else None,
            "reference_images": [r.model_dump() for r in program.reference_images] if program else [],
            "termination": self.termination,
            "rounds": self.rounds,
            "tool_calls": self.tool_calls,
            "repairs": self.repairs,
            "error": redact_text(self.error) if self.error else self.error,
            "thread_id": self.thread_id,
        }


def run_config(ctx: AgentContext, thread_id: str, **metadata: Any) -> dict[str, Any]:
    """The config every recorded run uses: thread id, metadata tags, a budget-sized recursion limit."""
    tags = {"policy": ctx.policy, "model": ctx.model if ctx.policy != "rules" else "rules-v1", "protocol": ctx.protocol,
            "experiment": ctx.experiment, "temperature": ctx.temperature, "top_p": ctx.top_p, "max_tokens": ctx.max_tokens}
    tags.update({k: v for k, v in metadata.items() if v is not None})
    return {"configurable": {"thread_id": thread_id}, "metadata": redact_value(tags), "recursion_limit": recursion_limit(ctx),
            "tags": default_tags(ctx.policy, ctx.experiment)}


def unavailable_backend(values: dict[str, Any]) -> str | None:
    """Why the trajectory counts as failed when every search and image-search call found its
    backend unavailable (no key, service down): its program rests on no evidence at all, and
    a batch must count it as failed rather than report "0 failed" (issue 24). None otherwise."""
    tally = values.get("backend_calls") or {}
    calls, unavailable = tally.get("calls", 0), tally.get("unavailable", 0)
    if calls and unavailable >= calls:
        return f"every search backend call was unavailable ({unavailable} of {calls}): {tally.get('reason', '')}"
    return None


def result_from_values(thread_id: str, values: dict[str, Any]) -> RunResult:
    termination, error = values.get("termination"), values.get("error")
    unavailable = unavailable_backend(values)
    if unavailable and termination == "answer":
        termination, error = "error", unavailable
    return RunResult(
        thread_id=thread_id,
        request=values.get("request", ""),
        program=values.get("program"),
        termination=termination,
        error=error,
        rounds=values.get("rounds", 0),
        tool_calls=values.get("tool_calls", 0),
        repairs=list(values.get("repairs") or []),
        render=values.get("render"),
        messages=list(values.get("messages") or []),
        guide=values.get("guide"),
    )


async def run_with_saver(
    request: str, ctx: AgentContext, saver: BaseCheckpointSaver, *, thread_id: str, graph: Any = None, store: Any = None,
    on_event: Callable[[dict[str, Any]], None] | None = None, durability: str | None = None, **metadata: Any,
) -> RunResult:
    """Run (or continue) one thread on an open saver. ``store``: the graph's long-term memory;
    ``on_event``: called with each custom progress event as it happens; ``durability`` is
    LangGraph's (``sync`` | ``async`` | ``exit``; None: LangGraph's default, ``async``)."""
    graph = graph or build_graph(saver, store=store)
    config = run_config(ctx, thread_id, **metadata)
    snapshot = await graph.aget_state(config)
    if snapshot.values and not snapshot.tasks:
        # Finished before. Not ``not snapshot.next``: after a crash between a step's task
        # writes and the step's checkpoint, ``next`` is empty (the step's tasks are done)
        # although the steps after it never ran; ``tasks`` still lists that step.
        return result_from_values(thread_id, snapshot.values)
    graph_input = None if snapshot.values else {"request": request}
    if graph_input is not None and ctx.guidance == "retrieve":
        config["metadata"].update(await _guide_metadata(request, ctx, graph.store))
    options: dict[str, Any] = {"durability": durability} if durability else {}
    values: Any = None
    if on_event is None:
        values = await graph.ainvoke(graph_input, config, context=ctx, **options)
    else:
        async for mode, chunk in graph.astream(graph_input, config, context=ctx, stream_mode=["custom", "values"], **options):
            if mode == "custom":
                on_event(chunk)
            else:
                values = chunk
    if isinstance(values, dict) and "messages" in values:
        # The run's output is the final state's output channels: what ``aget_state`` would
        # read back, without rebuilding the message history from the checkpoints again.
        return result_from_values(thread_id, values)
    snapshot = await graph.aget_state(config)
    return result_from_values(thread_id, snapshot.values)


async def _guide_metadata(request: str, ctx: AgentContext, store: Any) -> dict[str, Any]:
    """``guide_id``/``guide_score`` for the checkpoint metadata; the planner then uses that very
    guide. A memory that cannot be read adds nothing: the planner reports it as the run's error."""
    from genevolve_graph.experience.memory import GuideMemoryError, find_guide, guide_metadata

    try:
        return guide_metadata(await find_guide(request, ctx, store))
    except (GuideMemoryError, OSError):
        return {}


async def run_one(
    request: str, ctx: AgentContext, *, checkpoint_url: str, thread_id: str, store: Any = None,
    on_event: Callable[[dict[str, Any]], None] | None = None, **metadata: Any,
) -> RunResult:
    async with open_checkpointer(checkpoint_url) as saver:
        return await run_with_saver(request, ctx, saver, thread_id=thread_id, store=store, on_event=on_event, **metadata)


def write_program_json(path: Path, result: RunResult) -> Path:
    """``program.json``: the program plus termination, rounds, thread_id (atomic write)."""
    payload = result.program.model_dump() if result.program else {"gen_prompt": None, "reference_images": []}
    payload.update(
        termination=result.termination,
        rounds=result.rounds,
        tool_calls=result.tool_calls,
        thread_id=result.thread_id,
        repairs=result.repairs,
        error=result.error,
        render=result.render.model_dump() if result.render else None,
    )
    if result.guide is not None:  # guidance="retrieve" found one
        payload["guide"] = {"id": result.guide.get("id"), "score": result.guide.get("score"), "source": result.guide.get("source")}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = mkstemp(dir=path.parent, prefix=".program.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(payload, stream, ensure_ascii=False, indent=2)
    os.replace(tmp, path)
    return path
