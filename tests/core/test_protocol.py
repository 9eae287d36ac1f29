"""The GenEvolve text protocol: parsing replies and rendering what the policy reads."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from genevolve_graph.core.protocol import (
    SKILL_NAMES,
    chat_dicts,
    loads_lenient,
    parse_reply,
    policy_messages,
    tool_schemas,
    tools_block,
)


def test_tool_call_is_parsed_with_think():
    parsed = parse_reply('<think>need facts</think>\n<tool_call>{"name": "search", "arguments": {"queries": ["Eiffel Tower"], "top_k": 3}}</tool_call>')
    assert parsed.kind == "tool_call"
    assert parsed.think == "need facts"
    assert parsed.tool_name == "search"
    assert parsed.arguments == {"queries": ["Eiffel Tower"], "top_k": 3}


def test_answer_is_parsed():
    parsed = parse_reply('<think>ok</think><answer>{"gen_prompt": "a fox", "reference_images": [{"img_id": "IMG_001", "note": "fur"}]}</answer>')
    assert parsed.kind == "answer"
    assert parsed.answer == {"gen_prompt": "a fox", "reference_images": [{"img_id": "IMG_001", "note": "fur"}]}


@pytest.mark.parametrize(
    "text, problem",
    [
        ("just words", "neither a <tool_call> nor an <answer>"),
        ('<tool_call>{"name": "search", "arguments": {"queries": ["a"]}}</tool_call><answer>{"gen_prompt": "x"}</answer>', "both"),
        ('<tool_call>{"name": "browse", "arguments": {}}</tool_call>', "unknown tool 'browse'"),
        ('<tool_call>{"name": "search", "arguments": {"queries": []}}</tool_call>', "non-empty list"),
        ('<tool_call>{"name": "query_knowledge", "arguments": {"skill_name": "magic"}}</tool_call>', "one of spatial_layout"),
        ('<tool_call>{"name": "search", "arguments": {"queries": ["a"]}}</tool_call><tool_call>{"name": "search", "arguments": {"queries": ["b"]}}</tool_call>', "one tool call per round"),
        ("<answer>{not json}</answer>", "not valid JSON"),
        ('<answer>{"reference_images": []}</answer>', "non-empty 'gen_prompt'"),
    ],
)
def test_invalid_replies_say_why(text, problem):
    parsed = parse_reply(text)
    assert parsed.kind == "invalid"
    assert problem in parsed.problem


def test_lenient_json_recovers_fences_and_trailing_commas():
    assert loads_lenient('```json\n{"a": [1, 2,],}\n```') == {"a": [1, 2]}
    assert loads_lenient('Here it is: {"a": 1} thanks') == {"a": 1}
    with pytest.raises(ValueError):
        loads_lenient("no json here")


def test_tool_arguments_given_as_a_string_and_single_query_are_normalised():
    parsed = parse_reply('<tool_call>{"name": "search", "arguments": "{\\"queries\\": \\"Big Ben\\"}"}</tool_call>')
    assert parsed.kind == "tool_call" and parsed.arguments == {"queries": ["Big Ben"]}


def test_tools_block_has_one_schema_per_line():
    lines = tools_block().splitlines()
    assert lines[0] == "<tools>" and lines[-1] == "</tools>"
    schemas = [json.loads(line) for line in lines[1:-1]]
    assert schemas == tool_schemas()
    names = [s["function"]["name"] for s in schemas]
    assert names == ["search", "image_search", "query_knowledge"]
    assert schemas[2]["function"]["parameters"]["properties"]["skill_name"]["enum"] == list(SKILL_NAMES)
    assert schemas[0]["function"]["parameters"]["properties"]["top_k"]["default"] == 5


def test_policy_messages_render_tool_results_as_user_turns():
    state = [
        SystemMessage("sys", id="s"),
        HumanMessage("req", id="r"),
        AIMessage("<think>t</think><tool_call>{}</tool_call>", id="a", tool_calls=[{"name": "search", "args": {"queries": ["q"]}, "id": "c1"}]),
        ToolMessage("--- search result for [q] ---", tool_call_id="c1", name="search", id="t"),
    ]
    assert chat_dicts(state) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "req"},
        {"role": "assistant", "content": "<think>t</think><tool_call>{}</tool_call>"},
        {"role": "user", "content": "<tool_response>\n--- search result for [q] ---\n</tool_response>"},
    ]
    native = policy_messages(state, "native")
    assert isinstance(native[3], ToolMessage) and native[2].tool_calls[0]["id"] == "c1"


def test_format_error_is_framed_as_a_tool_response_in_the_text_protocol():
    from genevolve_graph.core.protocol import control_message

    state = [
        SystemMessage("sys", id="s"),
        HumanMessage("req", id="r"),
        AIMessage("no tags here", id="a"),
        control_message("Your last reply could not be used.", "format_error"),
        control_message("This is your final round.", "final_step"),
    ]
    assert chat_dicts(state)[3:] == [
        {"role": "user", "content": "<tool_response>\nYour last reply could not be used.\n</tool_response>"},
        {"role": "user", "content": "This is your final round."},
    ]
    # Native tool calling has no <tool_response> framing: the message goes as it is.
    assert chat_dicts(state, "native")[3] == {"role": "user", "content": "Your last reply could not be used."}


def test_skill_block_has_a_blank_line_after_the_heading():
    from genevolve_graph.tools.observations import skill_block

    assert skill_block("spatial_layout", "Guide text.") == "## Skill Guidance\n\n=== Skill: spatial_layout ===\nGuide text."


@pytest.mark.parametrize("protocol", ["genevolve", "native"])
def test_rendered_messages_match_policy_messages_and_render_each_message_once(protocol):
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    from genevolve_graph.core.protocol import RenderedMessages, policy_messages

    history = [
        SystemMessage(content="sys", id="s"),
        HumanMessage(content="a fox", id="r"),
        AIMessage(content="<tool_call>…</tool_call>", id="a1",
                  tool_calls=[{"name": "search", "args": {"queries": ["fox"]}, "id": "c1", "type": "tool_call"}]),
        ToolMessage(content="--- search result ---", tool_call_id="c1", id="t1"),
    ]
    rendered = RenderedMessages(protocol)
    first = rendered.render(history)
    assert [m.model_dump() for m in first] == [m.model_dump() for m in policy_messages(history, protocol)]
    second = rendered.render(history + [AIMessage(content="<answer>{}</answer>", id="a2")])
    assert all(a is b for a, b in zip(first, second))  # earlier messages: the same rendered objects
    # A message replaced under the same id (LangGraph's add_messages semantics) renders anew.
    replaced = rendered.render([*history[:3], ToolMessage(content="other", tool_call_id="c1", id="t1")])
    assert replaced[3] is not first[3] and "other" in str(replaced[3].content)


def test_rendered_messages_are_kept_only_while_their_trajectory_lives():
    """The policy's render cache hits on every later round of a trajectory, and lets a
    finished trajectory's messages go (a 10^4-row batch kept 16k of them before)."""
    import gc

    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from genevolve_graph.core.protocol import RenderedMessages

    cache = RenderedMessages("genevolve")
    state = [HumanMessage("a red fox", id="h1"),
             AIMessage("", id="a1", tool_calls=[{"name": "search", "args": {"queries": ["fox"]}, "id": "c1"}]),
             ToolMessage("fox facts", tool_call_id="c1", id="t1")]
    first = cache.render(state)
    again = cache.render(state)
    assert all(a is b for a, b in zip(first, again)) and len(cache) == 3
    assert cache.render([ToolMessage("other facts", tool_call_id="c1", id="t1")])[0] is not first[2]  # replaced under its id
    del state, first, again
    gc.collect()
    assert len(cache) == 0
