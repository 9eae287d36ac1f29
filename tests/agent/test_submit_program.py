"""``submit_program``: the structured final answer of the native protocol (issue 24, item 4).
A tool-calling model submits the program as a tool call; prose is no longer its only way
to finish, and the genevolve text protocol's tool block is unchanged."""

from __future__ import annotations

import pytest

from genevolve_graph import AgentContext, build_graph
from genevolve_graph.core.protocol import ANSWER_TOOL, tools_block

from .test_graph_openai import CHAT_CLIENTS, run

SCRIPT = [
    {"content": "", "tool_calls": [{"id": "call_s", "name": "search", "arguments": {"queries": ["emperor penguin"]}}]},
    {"content": "", "tool_calls": [{"id": "call_i", "name": "image_search", "arguments": {"query": "emperor penguin", "top_k": 2}}]},
    {"content": "", "tool_calls": [{"id": "call_a", "name": ANSWER_TOOL, "arguments": {
        "gen_prompt": "Exactly three emperor penguins on sea ice, shaped like IMG_001.",
        "reference_images": [{"img_id": "IMG_001", "note": "penguin posture"}]}}]},
]


@pytest.mark.parametrize("options", CHAT_CLIENTS, ids=["lean", "sdk"])
async def test_a_tool_calling_model_submits_the_program(scripted_server, tmp_path, options):
    server = scripted_server({"penguins": SCRIPT})
    result = await run(server, tmp_path, request="three penguins", protocol="native", options=options)
    assert result.termination == "answer", result.error
    assert result.rounds == 3 and result.tool_calls == 2
    assert result.program.gen_prompt == "Exactly three emperor penguins on sea ice, shaped like the first reference image."
    assert [r.img_id for r in result.program.reference_images] == ["IMG_001"]
    tools = [t["function"]["name"] for t in server.successful_bodies()[0]["tools"]]
    assert tools == ["search", "image_search", "query_knowledge", ANSWER_TOOL]
    last = result.messages[-1]
    assert last.tool_calls[0]["name"] == ANSWER_TOOL and last.tool_calls[0]["id"] == "call_a"


async def test_a_malformed_submission_is_a_format_error_with_the_fix(scripted_server, tmp_path):
    script = [
        {"content": "", "tool_calls": [{"id": "c1", "name": ANSWER_TOOL, "arguments": {"reference_images": []}}]},
        {"content": "", "tool_calls": [{"id": "c2", "name": ANSWER_TOOL, "arguments": {"gen_prompt": "Three penguins on ice.", "reference_images": []}}]},
    ]
    server = scripted_server({"penguins": script})
    result = await run(server, tmp_path, request="three penguins", protocol="native")
    assert result.termination == "answer" and result.rounds == 2, result.error
    feedback = server.successful_bodies()[1]["messages"][-1]["content"]
    assert f"the {ANSWER_TOOL} arguments" in feedback


def test_the_text_protocol_keeps_its_three_tools():
    assert ANSWER_TOOL not in tools_block()
    assert build_graph() is not None and AgentContext(protocol="genevolve").protocol == "genevolve"
