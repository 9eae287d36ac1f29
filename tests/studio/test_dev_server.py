"""``langgraph dev`` on the project's langgraph.studio.json (the Studio configuration), driven through langgraph-sdk.

The server is started as a subprocess on a loopback port that is deliberately busy, so the
test must read the port it actually bound from its log; it lists the assistant, reads the
context form, runs a thread with the rules policy, reads the state history, and is stopped
by its pid. The run must land in the SQLite trace database named by GENEVOLVE_TRACE_DB.
"""

from __future__ import annotations

import dataclasses
import socket

import pytest

from genevolve_graph.core.context import AgentContext
from genevolve_graph.core.state import Program

from ..scripts import PARIS, PARIS_SCRIPT
from .conftest import ROOT
from .dev_server import bound_port, langgraph_dev

pytest.importorskip("langgraph_api", reason="the dev-server test needs the studio extra: pip install 'genevolve-graph[studio]'")
langgraph_sdk = pytest.importorskip("langgraph_sdk")

REQUEST = 'A 1990s travel-magazine cover in front of the Eiffel Tower, title "PARIS"'
PROGRESS = ["tool_started", "image_ready", "tool_done", "render_started", "render_done"]


def test_bound_port_is_read_from_the_log():
    assert bound_port("- \x1b[36mAPI:\x1b[0m \x1b[36mhttp://127.0.0.1:40123\x1b[0m") == 40123
    assert bound_port("WARNING Port 2024 is already in use, using port 36967 instead.") == 36967
    assert bound_port("starting...") is None


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_studio_dev_server_runs_a_thread_and_records_it(tmp_path, subprocess_env, scripted_server):
    trace_db = tmp_path / "studio" / "traces.sqlite"
    out_dir = tmp_path / "renders"
    policy = scripted_server({PARIS: PARIS_SCRIPT})
    # the operator allows its policy endpoint and the test's folder (docs/security.md)
    env = dict(subprocess_env, GENEVOLVE_TRACE_DB=str(trace_db), GENEVOLVE_ALLOWED_ROOTS=str(tmp_path), GENEVOLVE_RENDERS_DIR=str(out_dir),
               GENEVOLVE_ALLOWED_BASE_URLS=policy.base_url)
    with socket.socket() as busy:  # the requested port is taken: the server must move
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        requested = busy.getsockname()[1]
        with langgraph_dev(ROOT, tmp_path / "dev.log", env, port=requested, config="langgraph.studio.json") as server:
            assert server.port != requested and f"using port {server.port} instead" in server.log()
            client = langgraph_sdk.get_sync_client(url=server.url)

            assistants = {a["graph_id"]: a for a in client.assistants.search()}
            assert sorted(assistants) == ["genevolve", "genevolve_render"]  # the agent, and the render-only graph of render --server
            assistant_id = assistants["genevolve"]["assistant_id"]
            render_schemas = client.assistants.get_schemas(assistants["genevolve_render"]["assistant_id"])
            assert {"program", "reference_data", "row_id", "batch_run"} <= set(render_schemas["input_schema"]["properties"])

            schemas = client.assistants.get_schemas(assistant_id)
            form = schemas["context_schema"]["properties"]
            for f in dataclasses.fields(AgentContext):
                assert form[f.name]["description"] == f.metadata["description"], f.name
            assert form["policy"]["default"] == "rules" and form["max_rounds"]["default"] == 11
            assert "request" in schemas["input_schema"]["properties"]

            thread = client.threads.create()
            context = {"policy": "rules", "renderer": "preview", "output_dir": str(out_dir)}
            parts = list(client.runs.stream(thread["thread_id"], "genevolve", input={"request": REQUEST},
                                            context=context, stream_mode=["updates", "custom"]))
            errors = [p.data for p in parts if p.event == "error"]
            assert not errors, errors
            events = [p.data["event"] for p in parts if p.event == "custom"]
            assert [e for e in events if e in PROGRESS][-2:] == ["render_started", "render_done"]
            assert {"tool_started", "image_ready", "tool_done"} <= set(events)
            updated = [node for p in parts if p.event == "updates" for node in p.data]
            assert updated[0] == "planner" and updated[-3:] == ["binder", "emitter", "render"]

            state = client.threads.get_state(thread["thread_id"])
            values = state["values"]
            assert values["termination"] == "answer" and values["render"]["success"]
            assert (out_dir / thread["thread_id"] / f"{thread['thread_id']}.png").stat().st_size > 5_000
            history = client.threads.get_history(thread["thread_id"], limit=100)
            steps = [h["metadata"]["step"] for h in history]
            assert steps == list(range(steps[0], -2, -1))  # newest first, every superstep down to the input
            assert history[-1]["metadata"]["source"] == "input" and history[0]["next"] == []

            # A served policy too: HTTP to an OpenAI-compatible endpoint from inside the server.
            served = client.threads.create()
            final = client.runs.wait(served["thread_id"], "genevolve", input={"request": PARIS},
                                     context={"policy": "openai", "base_url": policy.base_url, "model": "genevolve-8b", "renderer": "none"})
            assert final["termination"] == "answer" and final["program"]["reference_images"][0]["img_id"] == "IMG_001"
            assert len(policy.successful_bodies()) == len(PARIS_SCRIPT)
        log = server.log()
    assert server.process.poll() is not None  # stopped by its pid
    assert "BlockingError" not in log and "Blocking call" not in log

    # The Studio run is in the trace database, readable like any command-line run.
    from genevolve_graph.agent.graph import build_graph
    from genevolve_graph.persistence import open_checkpointer_sync

    with open_checkpointer_sync(f"sqlite:///{trace_db}") as saver:
        config = {"configurable": {"thread_id": thread["thread_id"]}}
        recorded = build_graph(saver).get_state(config)
        checkpoints = list(saver.list(config))
    assert isinstance(recorded.values["program"], Program)
    assert recorded.values["program"].gen_prompt == values["program"]["gen_prompt"]
    assert recorded.metadata["graph_id"] == "genevolve" and recorded.metadata["policy"] == "rules"
    assert len(checkpoints) == len(history)
