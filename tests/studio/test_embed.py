"""The agent inside other apps: a Runnable in a LangChain chain, a subgraph node, streaming."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from genevolve_graph import AgentContext, Program
from genevolve_graph.agent.embed import NoProgramError, agent_node, agent_subgraph, as_runnable, request_text
from genevolve_graph.agent.graph import build_graph, recursion_limit
from genevolve_graph.persistence import serializer

from ..scripts import PARIS

OFFLINE = AgentContext(renderer="none")


# --------------------------------------------------------------------------- the Runnable


def test_runnable_takes_a_request_string_and_returns_the_program():
    program = as_runnable(context=OFFLINE).invoke(PARIS)
    assert isinstance(program, Program)
    assert program.gen_prompt.startswith("A 1990s travel-magazine cover") and '"PARIS"' in program.gen_prompt
    assert program.reference_images[0].img_id == "IMG_001" and program.reference_images[0].local_path


def test_request_forms_a_chain_may_hand_over():
    assert request_text({"request": " a fox "}) == "a fox"
    assert request_text({"question": "a fox", "id": 3}) == "a fox"  # a benchmark row
    assert request_text(PromptTemplate.from_template("a {animal}").invoke({"animal": "fox"})) == "a fox"
    assert request_text(AIMessage(content="a fox")) == "a fox"
    with pytest.raises(TypeError, match="needs a 'request' string"):
        request_text({"text": "a fox"})
    with pytest.raises(TypeError, match="got int"):
        request_text(7)
    with pytest.raises(ValueError, match="the request is empty"):
        request_text("   ")


def test_inside_a_langchain_chain_with_batch():
    template = PromptTemplate.from_template('A travel poster of {place}, with the title "{title}"')
    chain = template | as_runnable(context=OFFLINE) | RunnableLambda(lambda p: {"prompt": p.gen_prompt, "refs": len(p.reference_images)})
    results = chain.batch([{"place": "Mount Fuji", "title": "FUJI"}, {"place": "the Colosseum", "title": "ROMA"}])
    assert results[0]["prompt"].startswith('A travel poster of Mount Fuji, with the title "FUJI"')
    assert '"ROMA"' in results[1]["prompt"] and all(r["refs"] >= 1 for r in results)


async def test_chat_prompt_messages_are_accepted_asynchronously():
    chain = ChatPromptTemplate.from_messages([("human", "A {thing} on a wooden table")]) | RunnableLambda(
        lambda value: value.to_messages()[-1]
    ) | as_runnable(context=OFFLINE)
    program = await chain.ainvoke({"thing": "teapot"})
    assert program.gen_prompt.startswith("A teapot on a wooden table")


async def test_recorded_runs_get_their_own_threads_and_metadata():
    saver = InMemorySaver(serde=serializer())
    agent = as_runnable(build_graph(saver), context=OFFLINE.with_updates(experiment="embed-test"))
    await agent.abatch(["a red fox in the snow", "a lighthouse on a cliff"])
    agent.invoke("a teapot", {"configurable": {"thread_id": "named"}, "metadata": {"row_id": "r7"}})
    latest = {}
    for item in saver.list(None):
        latest.setdefault(item.config["configurable"]["thread_id"], item)
    assert len(latest) == 3 and "named" in latest
    assert {c.metadata["experiment"] for c in latest.values()} == {"embed-test"}
    assert latest["named"].metadata["row_id"] == "r7" and latest["named"].metadata["policy"] == "rules"


def test_no_program_raises_with_the_reason(scripted_server):
    server = scripted_server(lambda body: "I would rather chat about the weather.")
    ctx = AgentContext(policy="openai", base_url=server.base_url, model="m", renderer="none", max_rounds=2)
    agent = as_runnable(context=ctx)
    with pytest.raises(NoProgramError) as info:
        agent.invoke("a fox")
    assert info.value.termination == "no_answer" and "within 2 rounds" in info.value.error
    # a chain can fall back, like with any failing step
    fallback = agent.with_fallbacks([RunnableLambda(lambda _: Program(gen_prompt="a fox"))], exceptions_to_handle=(NoProgramError,))
    assert fallback.invoke("a fox").gen_prompt == "a fox"


# --------------------------------------------------------------------------- a subgraph node


class Studio(TypedDict, total=False):
    """A parent app sharing the agent's keys."""

    idea: str
    request: str
    program: Program | None
    termination: str | None
    caption: str


def brief(state: Studio) -> dict[str, Any]:
    return {"request": f'A vintage travel poster of {state["idea"]}, title "{state["idea"].upper()}"'}


def caption(state: Studio) -> dict[str, Any]:
    program = state["program"]
    return {"caption": f"{len(program.reference_images)} reference(s): {program.gen_prompt[:60]}"}


def parent_with_subgraph(saver) -> Any:
    builder = StateGraph(Studio)
    builder.add_node("brief", brief)
    builder.add_node("agent", agent_subgraph())
    builder.add_node("caption", caption)
    builder.add_edge(START, "brief")
    builder.add_edge("brief", "agent")
    builder.add_edge("agent", "caption")
    builder.add_edge("caption", END)
    return builder.compile(checkpointer=saver)


async def test_subgraph_node_streams_progress_and_records_under_its_namespace(tmp_path):
    saver = InMemorySaver(serde=serializer())
    app = parent_with_subgraph(saver)
    config = {"configurable": {"thread_id": "parent"}, "recursion_limit": 50}
    ctx = AgentContext(renderer="preview", output_dir=str(tmp_path))
    custom, updates = [], []
    async for namespace, mode, data in app.astream({"idea": "Mount Fuji"}, config, context=ctx,
                                                   stream_mode=["updates", "custom"], subgraphs=True):
        (custom if mode == "custom" else updates).append((namespace, data))
    assert custom and all(ns and ns[0].startswith("agent:") for ns, _ in custom)
    names = [data["event"] for _, data in custom]
    for event in ("tool_started", "image_ready", "tool_done", "render_started", "render_done"):
        assert event in names, event
    assert [next(iter(d)) for ns, d in updates if not ns] == ["brief", "agent", "caption"]
    assert ("planner" in {next(iter(d)) for ns, d in updates if ns})
    state = await app.aget_state(config)
    assert state.values["caption"].startswith("1 reference(s): A vintage travel poster of Mount Fuji")
    assert state.values["termination"] == "answer"
    namespaces = {c.config["configurable"]["checkpoint_ns"] for c in saver.list({"configurable": {"thread_id": "parent"}})}
    assert "" in namespaces and any(ns.startswith("agent:") for ns in namespaces)
    rendered = list(tmp_path.glob("*.png"))
    assert len(rendered) == 1 and rendered[0].stat().st_size > 5_000


class Shop(TypedDict, total=False):
    """A parent app with its own key names and its own context."""

    customer_request: str
    design: Program | None
    design_status: str | None


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_agent_node_maps_keys_and_brings_its_context(mode):
    builder = StateGraph(Shop)
    builder.add_node("designer", agent_node(OFFLINE, input_key="customer_request", output_key="design", termination_key="design_status"))
    builder.add_edge(START, "designer")
    builder.add_edge("designer", END)
    app = builder.compile(checkpointer=InMemorySaver(serde=serializer()))
    config = {"configurable": {"thread_id": f"shop-{mode}"}}
    request = {"customer_request": HumanMessage(content='A mug with the word "HELLO" printed on it')}
    result = app.invoke(request, config) if mode == "sync" else await app.ainvoke(request, config)
    assert result["design_status"] == "answer" and '"HELLO"' in result["design"].gen_prompt


# --------------------------------------------------------------------------- streaming the graph itself


async def test_graph_streams_updates_and_custom_progress_events(tmp_path):
    graph = build_graph()
    ctx = AgentContext(renderer="preview", output_dir=str(tmp_path), options={"output_name": "out.png"})
    events: list[dict[str, Any]] = []
    nodes: list[str] = []
    async for mode, data in graph.astream({"request": PARIS}, {"recursion_limit": recursion_limit(ctx)}, context=ctx,
                                          stream_mode=["updates", "custom"]):
        if mode == "custom":
            events.append(data)
        else:
            nodes.extend(data)
    assert nodes[0] == "planner" and nodes[-3:] == ["binder", "emitter", "render"]
    assert nodes.count("tools") == sum(e["event"] == "tool_started" for e in events)
    kinds = [e["event"] for e in events]
    # every tool run is bracketed by started/done, images arrive inside their image_search
    opened, ready = None, 0
    for event in events:
        if event["event"] == "tool_started":
            assert opened is None
            opened, ready = event["tool"], 0
        elif event["event"] == "image_ready":
            assert opened == "image_search" and event["img_id"].startswith("IMG_") and event["local_path"]
            ready += 1
        elif event["event"] == "tool_done":
            assert opened == event["tool"]
            # tool_done counts the images the search found (not only attached thumbnails)
            assert event["images"] == ready and event["thumbnails"] == 0
            opened = None
    assert any(e["event"] == "tool_done" and e["images"] > 0 for e in events)
    assert "image_ready" in kinds and kinds[-2:] == ["render_started", "render_done"]
    assert events[-1]["success"] and events[-1]["path"] == str(tmp_path / "out.png")
    assert (tmp_path / "out.png").stat().st_size > 5_000


def test_docs_events_table_lists_every_field(tmp_path):
    """docs/studio.md's table of custom events names every field each event carries."""
    import re
    from pathlib import Path as _Path

    doc = (_Path(__file__).resolve().parents[2] / "docs" / "studio.md").read_text(encoding="utf-8")
    documented: dict[str, set[str]] = {}
    for line in doc.splitlines():
        row = re.match(r"^\| `(\w+)` \| (.*?) \| .* \|$", line)
        if row:
            documented[row.group(1)] = set(re.findall(r"`(\w+)`", row.group(2)))
    graph = build_graph()
    ctx = AgentContext(renderer="preview", output_dir=str(tmp_path), options={"output_name": "out.png"})
    seen: dict[str, set[str]] = {}
    events: list[dict[str, Any]] = []
    for data in graph.stream({"request": PARIS}, {"recursion_limit": recursion_limit(ctx)}, context=ctx, stream_mode="custom"):
        events.append(data)
    for event in events:
        seen.setdefault(event["event"], set()).update(k for k in event if k != "event")
    assert set(seen) <= set(documented), f"undocumented events: {set(seen) - set(documented)}"
    for name, keys in seen.items():
        assert keys == documented[name], (name, keys, documented[name])
