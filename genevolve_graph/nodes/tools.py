"""The tools node: runs the turn's one tool call and returns its observation.

A tool failure becomes an observation (``search unavailable: ...``), never an exception out
of the graph. ``image_search`` hits get their ``IMG_###`` ids here, through the binder's
registry, because the policy must see the ids in the observation it reads next.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import StructuredTool

from genevolve_graph.core.context import AgentContext
from genevolve_graph.nodes.binder import assign_ids
from genevolve_graph.nodes.common import checked_context, emit
from genevolve_graph.prompts import TOOL_BUDGET_EXHAUSTED
from genevolve_graph.core.protocol import new_id, tool_schemas
from genevolve_graph.safety.protocol_tags import neutralize_observation
from genevolve_graph.nodes.services import Services
from genevolve_graph.skills import SkillError
from genevolve_graph.core.state import AgentState, Reference
from genevolve_graph.tools.base import BackendUnavailable, ImageHit
from genevolve_graph.tools.observations import image_search_block, search_block, skill_block
from genevolve_graph.core.tracing import nobody_listens, run_config

TOOL_SPECS: dict[str, dict[str, Any]] = {spec["function"]["name"]: spec["function"] for spec in tool_schemas()}


def as_langchain_tool(name: str, coroutine: Any) -> StructuredTool:
    """A tool call as a LangChain tool, so that tracers see a tool run named after it.

    The arguments were validated by the protocol layer already; the JSON-schema
    ``args_schema`` documents them without validating them a second time.
    """
    spec = TOOL_SPECS[name]
    return StructuredTool(name=name, description=spec["description"], args_schema=spec["parameters"], coroutine=coroutine)


def _failure(tool: str, exc: BaseException) -> str:
    if isinstance(exc, BackendUnavailable):
        return str(exc)
    return f"{tool} failed: {type(exc).__name__}: {exc}"


def _count(tally: dict[str, Any], exc: BaseException | None) -> None:
    """One backend call in ``tally``; an unavailable backend is counted with its reason."""
    tally["calls"] = tally.get("calls", 0) + 1
    if isinstance(exc, BackendUnavailable):
        tally["unavailable"] = tally.get("unavailable", 0) + 1
        tally.setdefault("reason", str(exc)[:300])


async def run_search(services: Services, ctx: AgentContext, queries: list[str], top_k: int, tally: dict[str, Any] | None = None) -> str:
    """All queries run concurrently; one block per query, in the order asked."""
    tally = {} if tally is None else tally
    try:
        backend = await services.aget_search(ctx)
    except Exception as exc:  # noqa: BLE001 - a misconfigured backend is an observation
        _count(tally, exc if isinstance(exc, BackendUnavailable) else BackendUnavailable(_failure("search", exc)))
        return _failure("search", exc)
    results = await asyncio.gather(*(backend.search(q, top_k) for q in queries), return_exceptions=True)
    blocks = []
    for query, result in zip(queries, results):
        if isinstance(result, BaseException):
            _count(tally, result)
            blocks.append(f"--- search result for [{query}] ---\n{_failure('search', result)}\n--- end of search result ---")
        else:
            _count(tally, None)
            blocks.append(search_block(query, result))
    return "\n".join(blocks)


async def run_image_search(
    services: Services, ctx: AgentContext, query: str, top_k: int, registry: dict[str, Reference],
    tally: dict[str, Any] | None = None,
) -> tuple[str | list[dict[str, Any]], dict[str, Reference], list[Reference]]:
    tally = {} if tally is None else tally
    try:
        backend = await services.aget_image_search(ctx)
        outcome = await backend.search_images(query, top_k)
    except Exception as exc:  # noqa: BLE001
        _count(tally, exc if isinstance(exc, BackendUnavailable) else None)
        return f"--- image search result for [{query}] ---\n{_failure('image_search', exc)}\n--- end of image search result ---", {}, []
    _count(tally, None)
    refs, added = assign_ids(registry, outcome.hits)
    block = image_search_block(query, refs, outcome.rejected)
    if ctx.options.get("show_images") and refs:
        # --show-images: thumbnails as image parts after the text, for vision policies.
        from genevolve_graph.tools.thumbnails import observation_content

        hits = [ImageHit(title=r.title, url=r.url, local_path=r.local_path, page_url=r.page_url) for r in refs]
        content = await asyncio.to_thread(observation_content, block, hits, [r.img_id for r in refs], ctx.options)
        return content, added, refs
    return block, added, refs


async def run_query_knowledge(services: Services, ctx: AgentContext, skill_name: str) -> str:
    try:
        skill = (await services.aget_skills(ctx)).get(skill_name)
    except SkillError as exc:
        return f"query_knowledge failed: {exc}"
    return skill_block(skill.name, skill.body)


def make_tools_node(services: Services):
    async def tools(state: AgentState) -> dict[str, Any]:
        ctx = await checked_context(services.confine)
        last = state["messages"][-1]
        assert isinstance(last, AIMessage) and last.tool_calls, "the tools node runs only after a tool call"
        call = last.tool_calls[0]
        name, args = call["name"], call["args"]
        used = state.get("tool_calls", 0)
        update: dict[str, Any] = {}
        if used >= ctx.max_tool_calls:
            observation = TOOL_BUDGET_EXHAUSTED.format(limit=ctx.max_tool_calls)
        else:
            emit("tool_started", tool=name, arguments=args)
            top_k = int(args.get("top_k", ctx.top_k))
            results: dict[str, Any] = {}
            tally = dict(state.get("backend_calls") or {})

            async def execute(**arguments: Any) -> Any:
                if name == "search":
                    return await run_search(services, ctx, arguments["queries"], top_k, tally)
                if name == "image_search":
                    content, results["added"], results["refs"] = await run_image_search(
                        services, ctx, arguments["query"], top_k, state.get("images") or {}, tally
                    )
                    return content
                return await run_query_knowledge(services, ctx, arguments["skill_name"])

            config = run_config(ctx, policy=services.policy)
            if nobody_listens(config):  # no tracer or callback: the call itself, without a tool run nobody sees
                observation = await execute(**args)
            else:
                observation = await as_langchain_tool(name, execute).ainvoke(args, config=config)
            found = len(results.get("refs", ()))
            if name == "image_search":
                update["images"] = results["added"]
                for ref in results["refs"]:
                    emit("image_ready", img_id=ref.img_id, local_path=ref.local_path, title=ref.title)
            update["tool_calls"] = used + 1
            if tally:
                update["backend_calls"] = tally
            text = observation if isinstance(observation, str) else observation[0]["text"]
            thumbnails = 0 if isinstance(observation, str) else len(observation) - 1
            emit("tool_done", tool=name, chars=len(text), images=found, thumbnails=thumbnails)
        observation = neutralize_observation(observation)  # web text cannot forge protocol tags
        update["messages"] = [ToolMessage(content=observation, tool_call_id=call["id"], name=name, id=new_id("tool"))]
        return update

    return tools
