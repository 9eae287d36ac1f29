"""Checkpointer round trips (memory, SQLite, and Postgres where CI provides it) and growth."""

from __future__ import annotations

import sqlite3

import pytest
from langchain_core.messages import AIMessage

from genevolve_graph import AgentContext, Program, build_graph
from genevolve_graph.persistence import CheckpointURLError, open_checkpointer, open_checkpointer_sync, parse_url
from genevolve_graph.agent.runner import run_with_saver

from tests.scripts import PARIS, PARIS_SCRIPT, answer, tool


def ctx_for(server, tmp_path, **kw):
    return AgentContext(policy="openai", base_url=server.base_url, model="m", renderer="none", output_dir=str(tmp_path), **kw)


async def test_round_trip(checkpoint_url, scripted_server, tmp_path, thread_id):
    server = scripted_server({PARIS: PARIS_SCRIPT})
    ctx = ctx_for(server, tmp_path)
    async with open_checkpointer(checkpoint_url) as saver:
        result = await run_with_saver(PARIS, ctx, saver, thread_id=thread_id)
        if checkpoint_url == "memory":  # nothing to reopen: read back through the same saver
            snapshot = await build_graph(saver).aget_state({"configurable": {"thread_id": thread_id}})
    if checkpoint_url != "memory":
        async with open_checkpointer(checkpoint_url) as saver:
            snapshot = await build_graph(saver).aget_state({"configurable": {"thread_id": thread_id}})
            history = [s async for s in build_graph(saver).aget_state_history({"configurable": {"thread_id": thread_id}})]
        # every superstep is a checkpoint: input, 5 planner turns, 4 tool runs, binder, emitter
        assert len(history) == 1 + 5 + 4 + 2 + 1
    values = snapshot.values
    assert isinstance(values["program"], Program)
    assert values["program"] == result.program
    assert [m.id for m in values["messages"]] == [m.id for m in result.messages]
    assert [m.content for m in values["messages"]] == [m.content for m in result.messages]
    ai = [m for m in values["messages"] if isinstance(m, AIMessage)]
    assert ai[0].tool_calls[0]["name"] == "query_knowledge"
    assert values["images"]["IMG_001"].local_path


async def test_a_thread_that_stopped_continues_from_its_checkpoint(scripted_server, tmp_path):
    url = f"sqlite:///{tmp_path / 'resume.sqlite'}"
    script = [tool("search", queries=["fox"]), answer("a red fox in snow")]
    server = scripted_server({"fox": script})
    ctx = ctx_for(server, tmp_path)
    async with open_checkpointer(url) as saver:
        graph = build_graph(saver, )
        config = {"configurable": {"thread_id": "r"}}
        # Stop after the first planner turn, as a killed process would.
        await graph.ainvoke({"request": "a fox"}, config, context=ctx, interrupt_after=["tools"])
        assert (await graph.aget_state(config)).next == ("planner",)
    async with open_checkpointer(url) as saver:
        result = await run_with_saver("a fox", ctx, saver, thread_id="r")
    assert result.termination == "answer" and result.rounds == 2
    assert len(server.successful_bodies()) == 2  # the first turn was not asked again


def test_checkpoint_storage_grows_linearly(scripted_server, tmp_path):
    """Bytes for 2N rounds stay near twice those of N rounds (quadratic storage would give ~4x)."""
    import asyncio

    def measure(rounds: int) -> int:
        script = [tool("search", queries=[f"q{i} " + "x" * 400]) for i in range(rounds - 1)] + [answer("done")]
        server = scripted_server({f"grow{rounds}": script})
        path = tmp_path / f"g{rounds}.sqlite"
        ctx = ctx_for(server, tmp_path, max_rounds=rounds + 1, max_tool_calls=rounds)
        async def go():
            async with open_checkpointer(f"sqlite:///{path}") as saver:
                await run_with_saver(f"grow{rounds}", ctx, saver, thread_id="g")
        asyncio.run(go())
        with sqlite3.connect(path) as conn:
            (checkpoints,) = conn.execute("select sum(length(checkpoint)) + sum(length(metadata)) from checkpoints").fetchone()
            (writes,) = conn.execute("select sum(length(value)) from writes").fetchone()
        return checkpoints + writes

    small, large = measure(10), measure(20)
    assert large / small < 2.6, (small, large)


def test_sync_saver_reads_what_the_async_saver_wrote(scripted_server, tmp_path):
    import asyncio

    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    server = scripted_server({"fox": [answer("a fox")]})

    async def go():
        async with open_checkpointer(url) as saver:
            await run_with_saver("a fox", ctx_for(server, tmp_path), saver, thread_id="s")

    asyncio.run(go())
    with open_checkpointer_sync(url) as saver:
        state = build_graph(saver).get_state({"configurable": {"thread_id": "s"}})
    assert state.values["program"].gen_prompt == "a fox"


@pytest.mark.parametrize("url", ["", "sqlite://", "sqlite:///", "mysql://x", "redis://localhost"])
def test_invalid_checkpoint_urls_name_the_fix(url):
    with pytest.raises(CheckpointURLError, match=r"use .*sqlite:///path"):
        parse_url(url)


def test_checkpoints_read_back_under_strict_msgpack(tmp_path):
    """With LANGGRAPH_STRICT_MSGPACK our allow-list still revives Program and Reference."""
    import subprocess
    import sys

    db = tmp_path / "strict.sqlite"
    code = f"""
import asyncio
from genevolve_graph import AgentContext, Program, Reference, build_graph
from genevolve_graph.persistence import open_checkpointer, open_checkpointer_sync
from genevolve_graph.agent.runner import run_with_saver
async def go():
    async with open_checkpointer("sqlite:///{db}") as saver:
        await run_with_saver("The Eiffel Tower at dusk", AgentContext(renderer="none"), saver, thread_id="s")
asyncio.run(go())
with open_checkpointer_sync("sqlite:///{db}") as saver:
    values = build_graph(saver).get_state({{"configurable": {{"thread_id": "s"}}}}).values
assert isinstance(values["program"], Program), type(values["program"])
assert all(isinstance(r, Reference) for r in values["images"].values())
print("ok", len(values["images"]))
"""
    env = {**__import__("os").environ, "LANGGRAPH_STRICT_MSGPACK": "true"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok ") and "Blocked" not in proc.stderr


async def test_lean_sqlite_saver_writes_what_the_stock_saver_writes(scripted_server, tmp_path):
    """Same checkpoints and writes, row for row, as LangGraph's AsyncSqliteSaver; only the
    channel versions are shorter (the zero-padded counter without the random suffix)."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from genevolve_graph.persistence import serializer

    server = scripted_server({PARIS: PARIS_SCRIPT})
    ctx = ctx_for(server, tmp_path)
    stock_path, lean_path = tmp_path / "stock.sqlite", tmp_path / "lean.sqlite"
    async with aiosqlite.connect(stock_path) as conn:
        saver = AsyncSqliteSaver(conn, serde=serializer())
        stock = await run_with_saver(PARIS, ctx, saver, thread_id="t")
    async with open_checkpointer(f"sqlite:///{lean_path}") as saver:
        lean = await run_with_saver(PARIS, ctx, saver, thread_id="t")
    assert stock.program == lean.program and [m.content for m in stock.messages] == [m.content for m in lean.messages]
    rows = {}
    for name, path in (("stock", stock_path), ("lean", lean_path)):
        with sqlite3.connect(path) as conn:
            rows[name] = (
                conn.execute("select count(*) from checkpoints").fetchone()[0],
                conn.execute("select task_path, idx, channel, type from writes order by rowid").fetchall(),
            )
    assert rows["stock"] == rows["lean"]
    with open_checkpointer_sync(f"sqlite:///{lean_path}") as saver:
        versions = saver.get_tuple({"configurable": {"thread_id": "t"}}).checkpoint["channel_versions"].values()
    assert all(len(v) == 32 and v.isdigit() for v in versions)


async def test_a_thread_written_by_the_stock_saver_continues_on_the_lean_one(scripted_server, tmp_path):
    """Versions compare across the two forms: a stopped thread from before resumes."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from genevolve_graph.persistence import serializer

    path = tmp_path / "old.sqlite"
    script = [tool("search", queries=["fox"]), tool("search", queries=["snow"]), answer("a red fox in snow")]
    server = scripted_server({"fox": script})
    ctx = ctx_for(server, tmp_path)
    config = {"configurable": {"thread_id": "old"}}
    async with aiosqlite.connect(path) as conn:
        saver = AsyncSqliteSaver(conn, serde=serializer())
        await saver.setup()
        await build_graph(saver).ainvoke({"request": "a fox"}, config, context=ctx, interrupt_after=["tools"])
    async with open_checkpointer(f"sqlite:///{path}") as saver:
        result = await run_with_saver("a fox", ctx, saver, thread_id="old")
        history = [s async for s in build_graph(saver).aget_state_history(config)]
    assert result.termination == "answer" and result.rounds == 3 and result.tool_calls == 2
    assert len(server.successful_bodies()) == 3
    assert history[0].values["termination"] == "answer"
    with open_checkpointer_sync(f"sqlite:///{path}") as saver:
        versions = [saver.get_tuple(s.config).checkpoint["channel_versions"] for s in (history[-1], history[0])]
    assert all("." in v for v in versions[0].values())  # written by the stock saver
    assert any("." not in v for v in versions[1].values())  # continued by the lean one
