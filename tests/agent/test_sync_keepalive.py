"""Every public entry point, several policy rounds, against a keep-alive HTTP/1.1 chat server.

Issue 24, item 0: a synchronous run ran each async node on its own short-lived event loop,
so the second policy round reused a kept-alive connection of a loop that had closed and
failed with "Event loop is closed". The scripted server is uvicorn (HTTP/1.1 keep-alive,
30 s); its recorded client ports show that connections were in fact reused.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_openai import ChatOpenAI
from typer.testing import CliRunner

from genevolve_graph import AgentContext, build_graph, create_genevolve_agent
from genevolve_graph.cli.app import app

from tests.scripts import answer, tool

REQUEST = "A lighthouse on a basalt cliff at dawn"
GENEVOLVE_SCRIPT = [
    tool("query_knowledge", "Light matters.", skill_name="aesthetic_drawing"),
    tool("search", "Check the coast.", queries=["basalt cliff lighthouse"]),
    tool("query_knowledge", "Where things sit.", skill_name="spatial_layout"),
    answer("A white lighthouse on a dark basalt cliff at dawn, warm light over the sea."),
]
NATIVE_SCRIPT = [
    {"content": "", "tool_calls": [{"id": "call_1", "name": "query_knowledge", "arguments": {"skill_name": "aesthetic_drawing"}}]},
    {"content": "", "tool_calls": [{"id": "call_2", "name": "search", "arguments": {"queries": ["basalt cliff lighthouse"]}}]},
    {"content": "", "tool_calls": [{"id": "call_3", "name": "query_knowledge", "arguments": {"skill_name": "spatial_layout"}}]},
    answer("A white lighthouse on a dark basalt cliff at dawn, warm light over the sea."),
]
ROUNDS = 4
CLIENTS = ["chat_openai", "lean", "sdk"]
"""``chat_openai``: the user's own ``ChatOpenAI`` given to ``create_genevolve_agent`` (the
reported case); ``lean``/``sdk``: the ``openai`` policy's two chat clients, built from the context."""


def make_agent(client: str, protocol: str, base_url: str) -> tuple[Any, dict[str, Any]]:
    """The agent and the keyword arguments of each call."""
    common = {"renderer": "none", "search": "local", "image_search": "local", "protocol": protocol}
    if client == "chat_openai":
        return create_genevolve_agent(ChatOpenAI(model="m", base_url=base_url, api_key="x", max_retries=0), **common), {}
    ctx = AgentContext(policy="openai", base_url=base_url, model="m", request_timeout=10.0, options={"chat_client": client}, **common)
    return build_graph(), {"context": ctx}


def check(result: dict) -> None:
    assert result["termination"] == "answer", result.get("error")
    assert result["rounds"] == ROUNDS
    assert "lighthouse" in result["program"].gen_prompt


@pytest.mark.timeout(240)
@pytest.mark.parametrize("protocol", ["genevolve", "native"])
@pytest.mark.parametrize("client", CLIENTS)
def test_every_entry_point_survives_many_rounds_on_kept_alive_connections(scripted_server, client, protocol):
    server = scripted_server({REQUEST: NATIVE_SCRIPT if protocol == "native" else GENEVOLVE_SCRIPT})
    agent, kw = make_agent(client, protocol, server.base_url)
    inp = {"request": REQUEST}

    check(agent.invoke(inp, **kw))
    check(agent.invoke(inp, **kw))  # a second sync run after the first one's steps have finished
    streamed = list(agent.stream(inp, stream_mode="values", **kw))
    check(streamed[-1])
    for result in agent.batch([inp, inp], **kw):
        check(result)

    async def asynchronous() -> list[dict]:
        results = [await agent.ainvoke(inp, **kw)]
        results.append([v async for v in agent.astream(inp, stream_mode="values", **kw)][-1])
        return results

    for result in asyncio.run(asynchronous()):
        check(result)

    sync_requests = server.requests[: 5 * ROUNDS]  # invoke, invoke, stream, batch x2
    assert all(r.status == 200 for r in server.requests)
    assert len({r.peer for r in sync_requests}) < len(sync_requests), "the sync runs never reused a connection"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("protocol", ["genevolve", "native"])
@pytest.mark.parametrize("client", ["lean", "sdk"])
def test_the_command_line_runs_many_rounds_against_a_keep_alive_server(scripted_server, tmp_path, client, protocol):
    server = scripted_server({REQUEST: NATIVE_SCRIPT if protocol == "native" else GENEVOLVE_SCRIPT})
    result = CliRunner().invoke(app, [
        "run", REQUEST, "--out", str(tmp_path / "out"), "--policy", "openai", "--base-url", server.base_url, "--model", "m",
        "--protocol", protocol, "--renderer", "none", "--option", f"chat_client={client}", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    assert f"termination: answer  rounds: {ROUNDS}" in result.output
    program = json.loads((tmp_path / "out" / "program.json").read_text())
    assert "lighthouse" in program["gen_prompt"]
    assert len({r.peer for r in server.requests}) < len(server.requests)
