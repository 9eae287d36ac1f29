"""The deployment configuration (langgraph.json, no checkpointer of ours) under ``langgraph dev``,
driven through langgraph-sdk and ``RemoteGraph``: schemas with fixed choices, unknown
context keys rejected, human review with interrupt/resume, and the RemoteGraph example.
One server serves the whole module; it is stopped by its pid.

Issue 24 over the server: many policy rounds on kept-alive connections (both chat clients,
both protocols, sync and async SDK clients), a messages input ending with the program
message, the review interrupt in LangChain's HITL shape resumed with a decision, and
``provider:model`` strings limited to the providers the operator allows."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from genevolve_graph.testing.scripted_openai import ScriptedChatServer

from ..agent.test_sync_keepalive import GENEVOLVE_SCRIPT, NATIVE_SCRIPT, REQUEST, ROUNDS
from .conftest import ROOT
from .dev_server import langgraph_dev

pytest.importorskip("langgraph_api", reason="the dev-server tests need the studio extra: pip install 'genevolve-graph[studio]'")
langgraph_sdk = pytest.importorskip("langgraph_sdk")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


NATIVE_REQUEST = "Native: " + REQUEST


@pytest.fixture(scope="module")
def chat():
    """A keep-alive HTTP/1.1 chat server (uvicorn) the served policy may call."""
    with ScriptedChatServer({REQUEST: GENEVOLVE_SCRIPT, NATIVE_REQUEST: NATIVE_SCRIPT}) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory, chat):
    tmp = tmp_path_factory.mktemp("deploy")
    env = {k: v for k, v in os.environ.items() if k not in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL", "GENEVOLVE_TRACE_DB")}
    env.update(HF_HUB_OFFLINE="1", LANGSMITH_TRACING="false", LANGGRAPH_CLI_NO_ANALYTICS="1", XDG_CACHE_HOME=str(tmp / "cache"),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
               GENEVOLVE_ALLOWED_ROOTS=str(tmp), GENEVOLVE_RENDERS_DIR=str(tmp),  # renders under the test's folder (docs/security.md)
               GENEVOLVE_ALLOWED_BASE_URLS=chat.base_url, GENEVOLVE_ALLOWED_MODEL_PROVIDERS="openai", OPENAI_API_KEY="sk-test")
    with langgraph_dev(ROOT, tmp / "dev.log", env, config="langgraph.json") as running:
        running.tmp = tmp
        yield running
    log = running.log()
    assert "unregistered type" not in log and "Blocked deserialization" not in log, log[-3000:]
    assert not (tmp / "cache" / "genevolve-graph" / "traces.sqlite").exists()  # the deployment config records no trace file


@pytest.fixture
def client(server):
    return langgraph_sdk.get_sync_client(url=server.url)


def test_schemas_have_fixed_choices_descriptions_and_an_example(client):
    [assistant] = client.assistants.search(graph_id="genevolve")
    schemas = client.assistants.get_schemas(assistant["assistant_id"])
    context = schemas["context_schema"]
    assert context["additionalProperties"] is False
    assert context["properties"]["policy"]["enum"][:2] == ["rules", "openai"]
    assert context["properties"]["protocol"]["enum"] == ["genevolve", "native"]
    assert "none" in context["properties"]["renderer"]["enum"] and "local" in context["properties"]["search"]["enum"]
    assert context["properties"]["review_before_render"]["default"] is False
    request = schemas["input_schema"]["properties"]["request"]
    assert request["description"].startswith("The image request") and "PARIS" in request["examples"][0]


@pytest.mark.parametrize(
    "context, message",
    [
        ({"max_round": 3}, "unknown context field(s) ['max_round']"),
        ({"policy": "magic"}, "unknown policy 'magic' (context field 'policy'); choose one of rules, openai"),
    ],
)
def test_bad_context_is_rejected_over_the_server(client, context, message):
    """An unknown key fails the run; a value no registry knows is refused (422) by the request
    guard before the run exists. Either way the error names the field, and nothing runs."""
    thread = client.threads.create()
    with pytest.raises(Exception) as failure:
        client.runs.wait(thread["thread_id"], "genevolve", input={"request": "a fox"}, context=context, raise_error=True)
    reply = getattr(failure.value, "response", None)
    assert message in str(failure.value) + (reply.text if reply is not None else "")
    assert client.threads.get_state(thread["thread_id"])["values"].get("program") is None  # nothing ran


def test_review_over_the_sdk_edit_then_render(client, server):
    out = server.tmp / "renders"
    context = {"review_before_render": True, "output_dir": str(out)}
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, "genevolve", input={"request": 'A poster of the Eiffel Tower, title "PARIS"'}, context=context)
    state = client.threads.get_state(thread)
    assert state["next"] == ["review"]
    [pending] = state["interrupts"]
    payload = pending["value"]
    assert payload["kind"] == "review_program" and payload["references"] and isinstance(payload["repairs"], list)
    first = payload["references"][0]["img_id"]
    edited = {"gen_prompt": f"A clean poster: the tower as in {first}, title \"PARIS\".", "reference_images": [{"img_id": first, "note": "the tower"}]}
    final = client.runs.wait(thread, "genevolve", command={"resume": {"action": "edit", "program": edited}}, context=context)
    assert final["termination"] == "answer" and final["review"] == {"action": "edit"}
    assert final["program"]["gen_prompt"] == 'A clean poster: the tower as in the first reference image, title "PARIS".'
    assert any(r.startswith("edit: replaced") for r in final["repairs"])
    assert final["render"]["success"] and (out / thread / f"{thread}.png").stat().st_size > 5_000


def test_remote_graph_example(server, capsys):
    from .test_examples import load

    example = load("remote_graph")
    final = example.main(server.url, "A lighthouse on a cliff at dawn", approve=True, output_dir=str(server.tmp / "remote"))
    assert final["termination"] == "answer" and final["render"]["success"]
    rejected = example.main(server.url, "A lighthouse on a cliff at dawn", approve=False, output_dir=str(server.tmp / "remote"))
    assert rejected["termination"] == "rejected" and rejected.get("render") is None
    printed = capsys.readouterr().out
    assert "program waiting for review: " in printed and "termination: rejected | rendered: nothing" in printed


# --------------------------------------------------------------------------- issue 24


def openai_context(chat, client: str, protocol: str) -> dict:
    return {"policy": "openai", "base_url": chat.base_url, "model": "m", "protocol": protocol, "renderer": "none",
            "request_timeout": 10.0, "options": {"chat_client": client}}


@pytest.mark.parametrize("protocol", ["genevolve", "native"])
@pytest.mark.parametrize("chat_client", ["lean", "sdk"])
def test_served_runs_survive_many_rounds_on_kept_alive_connections(server, chat, client, chat_client, protocol):
    request = NATIVE_REQUEST if protocol == "native" else REQUEST
    context = openai_context(chat, chat_client, protocol)
    for _ in range(2):  # a second run reuses the server's pooled connections
        thread = client.threads.create()
        values = client.runs.wait(thread["thread_id"], "genevolve", input={"request": request}, context=context)
        assert values["termination"] == "answer" and values["rounds"] == ROUNDS, values.get("error")
    thread = client.threads.create()
    parts = list(client.runs.stream(thread["thread_id"], "genevolve", input={"request": request}, context=context, stream_mode="values"))
    assert not [p for p in parts if p.event == "error"]
    assert parts[-1].data["termination"] == "answer" and parts[-1].data["rounds"] == ROUNDS

    async def asynchronous() -> dict:
        aclient = langgraph_sdk.get_client(url=server.url)
        thread = await aclient.threads.create()
        return await aclient.runs.wait(thread["thread_id"], "genevolve", input={"request": request}, context=context)

    values = asyncio.run(asynchronous())
    assert values["termination"] == "answer" and values["rounds"] == ROUNDS, values.get("error")


def test_served_chat_input_ends_with_the_program_message(server, client):
    thread = client.threads.create()
    values = client.runs.wait(thread["thread_id"], "genevolve",
                              input={"messages": [{"type": "human", "content": "A red fox in fresh snow"}]},
                              context={"policy": "rules", "renderer": "preview", "output_dir": str(server.tmp / "chat")})
    assert values["termination"] == "answer" and values["request"] == "A red fox in fresh snow", values.get("error")
    last = values["messages"][-1]
    assert last["type"] == "ai" and last["content"].startswith("Program: " + values["program"]["gen_prompt"])
    assert f"Image: {values['render']['output_path']}" in last["content"]


def test_review_in_the_hitl_shape_resumed_with_a_decision(server, client):
    context = {"review_before_render": True, "output_dir": str(server.tmp / "hitl")}
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, "genevolve", input={"messages": [{"type": "human", "content": 'A poster of the Eiffel Tower, title "PARIS"'}]},
                     context=context)
    [pending] = client.threads.get_state(thread)["interrupts"]
    payload = pending["value"]
    [action] = payload["action_requests"]
    assert action["name"] == "submit_program" and action["args"]["gen_prompt"]
    assert payload["review_configs"][0]["allowed_decisions"] == ["approve", "edit", "reject"]
    final = client.runs.wait(thread, "genevolve", command={"resume": {"decisions": [{"type": "approve"}]}}, context=context)
    assert final["termination"] == "answer" and final["review"] == {"action": "approve"} and final["render"]["success"]
    assert final["messages"][-1]["content"].startswith("Program: ")


def test_served_model_strings_only_for_allowed_providers(server, chat, client):
    context = {"policy": "openai", "model": "openai:m", "base_url": chat.base_url, "renderer": "none"}
    values = client.runs.wait(client.threads.create()["thread_id"], "genevolve", input={"request": REQUEST}, context=context)
    assert values["termination"] == "answer" and values["rounds"] == ROUNDS, values.get("error")
    thread = client.threads.create()
    with pytest.raises(Exception) as refused:
        client.runs.wait(thread["thread_id"], "genevolve", input={"request": REQUEST},
                         context={**context, "model": "anthropic:claude-x"}, raise_error=True)
    assert "GENEVOLVE_ALLOWED_MODEL_PROVIDERS" in str(refused.value)


JS_CLIENT = ROOT / "tests" / "studio" / "js"


def js_sdk() -> Path:
    """The folder of the Node client with @langchain/langgraph-sdk installed: ``npm ci`` from the
    registry into its ``node_modules`` (git-ignored) the first time, reused after."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("the JavaScript client test needs Node.js and npm on PATH (it installs @langchain/langgraph-sdk from npm)")
    if not (JS_CLIENT / "node_modules" / "@langchain" / "langgraph-sdk" / "package.json").is_file():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_CLIENT, check=True, timeout=300, capture_output=True)
    return JS_CLIENT


def test_javascript_sdk_drives_the_agent_through_review(server):
    """LangGraph's own JavaScript SDK, not ours: messages in, streamed run, the HITL interrupt,
    a decision to resume, the final message and program (issue 24, item 15)."""
    folder = js_sdk()
    done = subprocess.run(["node", "drive_genevolve.mjs", server.url, str(server.tmp / "js")], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    (server.tmp / "js_transcript.json").write_text(done.stdout)
    transcript = json.loads(done.stdout)["transcript"]
    steps = {t["what"]: t["body"] for t in transcript}
    assert steps["runs.stream"]["input"]["messages"][0]["type"] == "human"
    assert steps["streamed nodes"][:1] == ["planner"] and steps["streamed nodes"][-1] == "__interrupt__"
    assert steps["interrupt"]["action_requests"][0]["name"] == "submit_program"
    assert steps["interrupt"]["review_configs"][0]["allowed_decisions"] == ["approve", "edit", "reject"]
    final = steps["final"]
    assert final["termination"] == "answer" and final["review"] == {"action": "approve"} and final["render"]["success"]
    assert final["program"]["gen_prompt"] == steps["interrupt"]["action_requests"][0]["args"]["gen_prompt"]
    assert final["last_message"]["type"] == "ai" and final["last_message"]["content"].startswith("Program: " + final["program"]["gen_prompt"])


def test_render_assistant_program_input_is_typed_over_the_server(client):
    [assistant] = client.assistants.search(graph_id="genevolve_render")
    schema = client.assistants.get_schemas(assistant["assistant_id"])["input_schema"]
    ref = schema["properties"]["program"]["$ref"].rsplit("/", 1)[1]
    program = schema["$defs"][ref]
    assert program["properties"]["gen_prompt"]["type"] == "string" and program["properties"]["reference_images"]["type"] == "array"
