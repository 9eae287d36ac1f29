"""Whole trajectories through the graph against a scripted OpenAI-compatible server
(real HTTP, real ``ChatOpenAI``), in the GenEvolve text protocol and in native mode."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from genevolve_graph import AgentContext, Program, build_graph
from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.prompts import FINAL_STEP, FORMAT_ERROR
from genevolve_graph.core.protocol import chat_dicts, tools_block
from genevolve_graph.agent.runner import run_config, run_with_saver

from tests.scripts import PARIS, PARIS_SCRIPT, answer, tool


def ctx_for(server, tmp_path: Path, **overrides) -> AgentContext:
    base = dict(policy="openai", base_url=server.base_url, model="genevolve-8b", output_dir=str(tmp_path / "out"),
                renderer="none", retry_initial_delay=0.01, request_timeout=5.0)
    base.update(overrides)
    return AgentContext(**base)


async def run(server, tmp_path, request=PARIS, url="memory", **overrides):
    ctx = ctx_for(server, tmp_path, **overrides)
    async with open_checkpointer(url) as saver:
        return await run_with_saver(request, ctx, saver, thread_id="t-1", row_id="row-1")


async def test_whole_trajectory_with_search_images_and_skills(scripted_server, tmp_path):
    server = scripted_server({PARIS: PARIS_SCRIPT})
    result = await run(server, tmp_path, renderer="preview")
    assert result.termination == "answer", result.error
    assert result.rounds == 5 and result.tool_calls == 4
    program = result.program
    assert isinstance(program, Program)
    assert "IMG_" not in program.gen_prompt and "http" not in program.gen_prompt
    assert [r.img_id for r in program.reference_images] == ["IMG_001"]
    ref = program.reference_images[0]
    assert Path(ref.local_path).is_file() and ref.note == "tower silhouette and lattice shape"
    assert "eiffel" in ref.title.lower()
    assert result.render and result.render.success and Path(result.render.output_path).is_file()
    kinds = [type(m).__name__ for m in result.messages]
    assert kinds == ["SystemMessage", "HumanMessage"] + ["AIMessage", "ToolMessage"] * 4 + ["AIMessage"]


CHAT_CLIENTS = [{"chat_client": "lean"}, {"chat_client": "sdk"}]


@pytest.mark.parametrize("options", CHAT_CLIENTS, ids=["lean", "sdk"])
async def test_exact_messages_sent_to_the_server(scripted_server, tmp_path, options):
    server = scripted_server({PARIS: PARIS_SCRIPT})
    result = await run(server, tmp_path, options=options)
    bodies = server.successful_bodies()
    assert len(bodies) == 5
    first = bodies[0]
    assert "tools" not in first and "tool_choice" not in first
    assert first["temperature"] == 0.6 and first["top_p"] == 0.9 and first["max_completion_tokens"] == 4096
    assert first["model"] == "genevolve-8b"
    system, user = first["messages"]
    assert system["role"] == "system" and tools_block() in system["content"]
    assert user == {"role": "user", "content": PARIS}
    # Each later request is the previous one plus the raw reply and a <tool_response> user turn.
    for turn in range(1, 5):
        previous, current = bodies[turn - 1]["messages"], bodies[turn]["messages"]
        assert current[: len(previous)] == previous
        assert current[len(previous)] == {"role": "assistant", "content": PARIS_SCRIPT[turn - 1]}
        observation = current[len(previous) + 1]
        assert observation["role"] == "user"
        assert observation["content"].startswith("<tool_response>\n") and observation["content"].endswith("\n</tool_response>")
    # The skill block, byte for byte: heading, a blank line, the skill line, the guide.
    from genevolve_graph.skills import load_skills

    guide = load_skills().get("text_rendering").body
    assert bodies[1]["messages"][-1]["content"] == (
        "<tool_response>\n## Skill Guidance\n\n=== Skill: text_rendering ===\n" + guide + "\n</tool_response>"
    )
    search_obs = bodies[2]["messages"][-1]["content"]
    assert search_obs.count("--- search result for [") == 2 and "--- end of search result ---" in search_obs
    assert "1. title: " in search_obs and "\n  url: " in search_obs and "\n  snippet: " in search_obs
    image_obs = bodies[3]["messages"][-1]["content"]
    assert "--- image search result for [Eiffel Tower at dusk] ---" in image_obs
    assert "IMG_001: title: " in image_obs and "\n  local_path: " in image_obs and "\n  page_url: " in image_obs
    # The state renders to exactly what the server received last (plus the final reply).
    assert chat_dicts(result.messages)[:-1] == bodies[-1]["messages"]


async def test_final_step_message_before_the_last_round(scripted_server, tmp_path):
    looping = [tool("search", queries=[f"query {i}"]) for i in range(4)]
    server = scripted_server({"loop": looping})
    result = await run(server, tmp_path, request="loop forever", max_rounds=4)
    assert result.termination == "no_answer"
    assert "final round" in result.error or "no usable answer" in result.error
    assert result.rounds == 4 and result.tool_calls == 3
    last_request = server.successful_bodies()[-1]["messages"]
    assert last_request[-1] == {"role": "user", "content": FINAL_STEP}
    assert last_request[-2]["content"].startswith("<tool_response>")
    # The final-step message went out exactly once, before the last round only.
    assert sum(m["content"] == FINAL_STEP for m in last_request) == 1
    assert all(m["content"] != FINAL_STEP for b in server.successful_bodies()[:-1] for m in b["messages"])


async def test_tool_budget_is_enforced(scripted_server, tmp_path):
    script = [tool("search", queries=[f"q{i}"]) for i in range(3)] + [answer("a lighthouse on a cliff")]
    server = scripted_server({"lighthouse": script})
    result = await run(server, tmp_path, request="a lighthouse", max_tool_calls=2)
    assert result.tool_calls == 2
    assert result.termination == "answer"
    texts = [m.content for m in result.messages if isinstance(m, HumanMessage)]
    assert FINAL_STEP in texts
    format_errors = [m for m in result.messages if isinstance(m, HumanMessage) and m.additional_kwargs.get("genevolve_control") == "format_error"]
    assert len(format_errors) == 1 and "no longer available" in format_errors[0].content


async def test_malformed_reply_gets_a_format_error_and_the_round_counts(scripted_server, tmp_path):
    server = scripted_server({"fox": ["I think a fox would be nice.", '<answer>{"gen_prompt": "a red fox in snow",}</answer>']})
    result = await run(server, tmp_path, request="a fox")
    assert result.termination == "answer" and result.rounds == 2
    second = server.successful_bodies()[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": "I think a fox would be nice."}
    # The format error is an observation, framed like every tool result (wording ours).
    assert second[-1] == {
        "role": "user",
        "content": "<tool_response>\n" + FORMAT_ERROR.format(problem="the reply has neither a <tool_call> nor an <answer>") + "\n</tool_response>",
    }
    # The state keeps the plain text, marked as a control message.
    stored = [m for m in result.messages if isinstance(m, HumanMessage) and m.additional_kwargs.get("genevolve_control") == "format_error"]
    assert len(stored) == 1 and not str(stored[0].content).startswith("<tool_response>")


async def test_answer_repairs_are_made_and_recorded(scripted_server, tmp_path):
    script = [
        tool("image_search", query="red double decker bus", top_k=2),
        tool("image_search", query="Big Ben lighthouse bicycle", top_k=3),
        answer(
            "The bus from IMG_004 beside the landmark in the first reference image, see https://example.org/x, as in the third reference image.",
            [("IMG_004", "the bus"), ("IMG_002", "the landmark"), ("IMG_099", "unknown"), ("IMG_001", "colours")],
        ),
    ]
    server = scripted_server({"London": script})
    result = await run(server, tmp_path, request="London street scene")
    assert result.termination == "answer", result.error
    program = result.program
    ids = [r.img_id for r in program.reference_images]
    assert ids == sorted(ids) and len(ids) == 2  # capped to 2 and sorted
    assert set(ids) == {"IMG_002", "IMG_004"}
    assert "IMG_" not in program.gen_prompt and "https://" not in program.gen_prompt
    joined = " | ".join(result.repairs)
    assert "dropped reference 'IMG_099'" in joined
    assert "kept the first 2 of 3 references" in joined
    assert "sorted references by id" in joined
    assert "removed URLs" in joined
    # IMG_004 (now second) is named by its new ordinal; the policy's "first" (IMG_004) is renumbered.
    assert program.gen_prompt.startswith("The bus from the second reference image beside the landmark in the second reference image")


async def test_no_answer_at_all_ends_with_no_answer(scripted_server, tmp_path):
    server = scripted_server({"owl": ["hmm"] * 3})
    result = await run(server, tmp_path, request="an owl", max_rounds=3)
    assert result.termination == "no_answer"
    assert result.program is None
    assert "no usable answer within 3 rounds" in result.error


@pytest.mark.parametrize("options", CHAT_CLIENTS, ids=["lean", "sdk"])
async def test_retries_429_then_succeeds(scripted_server, tmp_path, options):
    server = scripted_server({"fox": [answer("a red fox")]}, flaky=[429, 503])
    result = await run(server, tmp_path, request="a fox", options=options)
    assert result.termination == "answer"
    assert [r.status for r in server.requests] == [429, 503, 200]


@pytest.mark.parametrize("options", CHAT_CLIENTS, ids=["lean", "sdk"])
async def test_persistent_5xx_ends_with_error_and_keeps_the_partial_trajectory(scripted_server, tmp_path, options):
    server = scripted_server({"fox": [tool("search", queries=["red fox"])]}, flaky=[])
    url = f"sqlite:///{tmp_path / 'trace.sqlite'}"
    result = await run(server, tmp_path, request="a fox", url=url, max_retries=2, options=options)
    assert result.termination == "error"
    assert "HTTP 500" in result.error and "script exhausted" in result.error
    assert len(server.requests) == 1 + 3  # turn 0 once, turn 1 three times (1 + 2 retries)
    async with open_checkpointer(url) as saver:
        graph = build_graph(saver)
        snapshot = await graph.aget_state({"configurable": {"thread_id": "t-1"}})
    messages = snapshot.values["messages"]
    assert isinstance(messages[2], AIMessage) and isinstance(messages[3], ToolMessage)
    assert snapshot.values["termination"] == "error"


@pytest.mark.parametrize("options", CHAT_CLIENTS, ids=["lean", "sdk"])
async def test_unreachable_endpoint_ends_with_error(tmp_path, options):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Dead:
        base_url = f"http://127.0.0.1:{port}/v1"

    result = await run(Dead(), tmp_path, request="a fox", max_retries=1, options=options)
    assert result.termination == "error"
    assert "cannot reach the policy endpoint" in result.error


@pytest.mark.parametrize("options", CHAT_CLIENTS, ids=["lean", "sdk"])
async def test_timeout_ends_with_error(scripted_server, tmp_path, options):
    server = scripted_server({"fox": [answer("a fox")]}, latency=1.0)
    result = await run(server, tmp_path, request="a fox", request_timeout=0.2, max_retries=1, options=options)
    assert result.termination == "error" and "timed out" in result.error
    assert len(server.requests) == 2


@pytest.mark.parametrize("options", CHAT_CLIENTS, ids=["lean", "sdk"])
async def test_native_protocol_uses_tool_calling(scripted_server, tmp_path, options):
    script = [
        {"content": "", "tool_calls": [{"id": "call_a", "name": "query_knowledge", "arguments": {"skill_name": "quantity_counting"}}]},
        {"content": "", "tool_calls": [{"id": "call_b", "name": "search", "arguments": {"queries": ["emperor penguin"]}}]},
        answer("Exactly three emperor penguins on sea ice."),
    ]
    server = scripted_server({"penguins": script})
    result = await run(server, tmp_path, request="three penguins", protocol="native", options=options)
    assert result.termination == "answer", result.error
    bodies = server.successful_bodies()
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["search", "image_search", "query_knowledge", "submit_program"]
    assert "<tools>" not in bodies[0]["messages"][0]["content"]
    last = bodies[-1]["messages"]
    assert last[-1]["role"] == "tool" and last[-1]["tool_call_id"] == "call_b"
    assert last[-2]["role"] == "assistant" and last[-2]["tool_calls"][0]["id"] == "call_b"
    assert "emperor" in last[-1]["content"].lower()


async def test_metadata_tags_the_thread(scripted_server, tmp_path):
    server = scripted_server({"fox": [answer("a fox")]})
    url = f"sqlite:///{tmp_path / 't.sqlite'}"
    ctx = ctx_for(server, tmp_path, experiment="exp-A")
    async with open_checkpointer(url) as saver:
        await run_with_saver("a fox", ctx, saver, thread_id="tagged", row_id="r7")
        found = [c async for c in saver.alist(None, filter={"experiment": "exp-A"})]
    assert found and {c.config["configurable"]["thread_id"] for c in found} == {"tagged"}
    metadata = found[0].metadata
    assert metadata["policy"] == "openai" and metadata["model"] == "genevolve-8b" and metadata["row_id"] == "r7"
    assert "api_key" not in json.dumps(metadata).lower()


def test_run_config_carries_a_budget_sized_recursion_limit():
    config = run_config(AgentContext(max_rounds=11), "t")
    assert config["recursion_limit"] >= 2 * 11 + 3


async def test_show_images_attaches_thumbnails_to_the_observation(scripted_server, tmp_path):
    server = scripted_server({PARIS: PARIS_SCRIPT})
    result = await run(server, tmp_path, options={"show_images": True, "thumbnail_max_side": 64})
    assert result.termination == "answer"
    image_turn = server.successful_bodies()[3]["messages"][-1]
    assert image_turn["role"] == "user" and isinstance(image_turn["content"], list)
    text, *images = image_turn["content"]
    assert text["type"] == "text" and text["text"].startswith("<tool_response>\n--- image search result for [")
    assert text["text"].endswith("\n</tool_response>")
    assert images and all(p["type"] == "image_url" and p["image_url"]["url"].startswith("data:image/") for p in images if p["type"] != "text")
    # Off by default: the text-only observation the released checkpoint saw.
    plain = scripted_server({PARIS: PARIS_SCRIPT})
    await run(plain, tmp_path)
    assert isinstance(plain.successful_bodies()[3]["messages"][-1]["content"], str)
