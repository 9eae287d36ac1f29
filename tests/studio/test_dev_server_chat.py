"""Issue 24 over ``langgraph dev``: one server for the module (startup is slow on small
machines), driven through langgraph-sdk's sync and async clients.

- item 0: the served graph runs several policy rounds against a keep-alive HTTP/1.1 chat
  server (the ``openai`` policy, both chat clients, both protocols), in a streamed run and
  in a waited run, from the sync and the async SDK client;
- item 1: a ``{"messages": [...]}`` input ends with an AIMessage stating the program.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from genevolve_graph.testing.scripted_openai import ScriptedChatServer

from ..agent.test_sync_keepalive import GENEVOLVE_SCRIPT, NATIVE_SCRIPT, REQUEST, ROUNDS
from .conftest import ROOT
from .dev_server import langgraph_dev

pytest.importorskip("langgraph_api", reason="the dev-server test needs the studio extra: pip install 'genevolve-graph[studio]'")
langgraph_sdk = pytest.importorskip("langgraph_sdk")

NATIVE_REQUEST = "Native: " + REQUEST


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(dev server, scripted chat server, output folder) for the whole module."""
    tmp = tmp_path_factory.mktemp("devchat")
    with ScriptedChatServer({REQUEST: GENEVOLVE_SCRIPT, NATIVE_REQUEST: NATIVE_SCRIPT}) as chat:
        env = {k: v for k, v in os.environ.items() if k not in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL", "GENEVOLVE_TRACE_DB")}
        env.update(HF_HUB_OFFLINE="1", LANGSMITH_TRACING="false", LANGGRAPH_CLI_NO_ANALYTICS="1",
                   PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
                   XDG_CACHE_HOME=str(tmp / "cache"), GENEVOLVE_ALLOWED_ROOTS=str(tmp), GENEVOLVE_ALLOWED_BASE_URLS=chat.base_url)
        with langgraph_dev(ROOT, tmp / "dev.log", env) as server:
            yield server, chat, tmp


def policy_context(chat, client: str, protocol: str) -> dict:
    return {"policy": "openai", "base_url": chat.base_url, "model": "m", "protocol": protocol, "renderer": "none",
            "request_timeout": 10.0, "options": {"chat_client": client}}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("protocol", ["genevolve", "native"])
@pytest.mark.parametrize("client", ["lean", "sdk"])
def test_served_runs_survive_many_rounds_on_kept_alive_connections(served, client, protocol):
    server, chat, _ = served
    request = NATIVE_REQUEST if protocol == "native" else REQUEST
    context = policy_context(chat, client, protocol)
    sync = langgraph_sdk.get_sync_client(url=server.url)
    for _ in range(2):  # a second run reuses the server's pooled connections
        thread = sync.threads.create()
        values = sync.runs.wait(thread["thread_id"], "genevolve", input={"request": request}, context=context)
        assert values["termination"] == "answer" and values["rounds"] == ROUNDS, values.get("error")
    thread = sync.threads.create()
    parts = list(sync.runs.stream(thread["thread_id"], "genevolve", input={"request": request}, context=context, stream_mode="values"))
    assert not [p for p in parts if p.event == "error"]
    assert parts[-1].data["termination"] == "answer" and parts[-1].data["rounds"] == ROUNDS

    async def asynchronous() -> dict:
        client_ = langgraph_sdk.get_client(url=server.url)
        thread = await client_.threads.create()
        return await client_.runs.wait(thread["thread_id"], "genevolve", input={"request": request}, context=context)

    values = asyncio.run(asynchronous())
    assert values["termination"] == "answer" and values["rounds"] == ROUNDS, values.get("error")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_served_chat_input_ends_with_the_program_message(served):
    server, _, tmp = served
    sync = langgraph_sdk.get_sync_client(url=server.url)
    thread = sync.threads.create()
    values = sync.runs.wait(thread["thread_id"], "genevolve",
                            input={"messages": [{"type": "human", "content": "A red fox in fresh snow"}]},
                            context={"policy": "rules", "renderer": "preview", "output_dir": str(tmp / "renders")})
    assert values["termination"] == "answer", values.get("error")
    last = values["messages"][-1]
    assert last["type"] == "ai" and last["content"].startswith("Program: " + values["program"]["gen_prompt"])
    assert f"Image: {values['render']['output_path']}" in last["content"]
