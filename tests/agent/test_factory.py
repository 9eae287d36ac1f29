"""create_genevolve_agent: any LangChain chat model drives a whole trajectory, in both protocols."""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from genevolve_graph import AgentContext, Program, create_genevolve_agent
from genevolve_graph.testing.fake_chat import ToolCallingFakeChatModel

from tests.scripts import PARIS, PARIS_SCRIPT, answer

CONFIG = {"configurable": {"thread_id": "factory"}}


def test_fake_list_chat_model_drives_a_whole_genevolve_trajectory(tmp_path):
    agent = create_genevolve_agent(FakeListChatModel(responses=PARIS_SCRIPT), checkpointer=InMemorySaver(), output_dir=str(tmp_path))
    out = agent.invoke({"request": PARIS}, CONFIG)
    assert out["termination"] == "answer" and out["rounds"] == 5 and out["tool_calls"] == 4
    program: Program = out["program"]
    assert [r.img_id for r in program.reference_images] == ["IMG_001"] and program.reference_images[0].local_path
    assert out["render"].success and (tmp_path / "factory.png").stat().st_size > 5_000
    names = [m.tool_calls[0]["name"] for m in out["messages"] if isinstance(m, AIMessage) and m.tool_calls]
    assert names == ["query_knowledge", "search", "image_search", "query_knowledge"]


def test_generic_fake_chat_model_gets_the_text_protocol(tmp_path):
    seen: list[list] = []

    class Recording(GenericFakeChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            seen.append(list(messages))
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    model = Recording(messages=iter([AIMessage(content=text) for text in PARIS_SCRIPT]))
    agent = create_genevolve_agent(model, renderer="none")
    out = agent.invoke({"request": PARIS})
    assert out["termination"] == "answer" and len(seen) == 5
    first, last = seen[0], seen[-1]
    assert isinstance(first[0], SystemMessage) and "<tools>" in first[0].content and first[1].content == PARIS
    # genevolve protocol: tool results come back as user turns inside <tool_response>, no ToolMessage
    assert not any(isinstance(m, ToolMessage) for m in last)
    responses = [m.content for m in last if isinstance(m, HumanMessage) and str(m.content).startswith("<tool_response>")]
    assert len(responses) == 4 and "=== Skill: text_rendering ===" in responses[0]


def native_script() -> list[AIMessage]:
    def call(name: str, **args) -> AIMessage:
        return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{name}", "type": "tool_call"}])

    final = {"gen_prompt": "A travel cover: the Eiffel Tower as in the first reference image, title \"PARIS\".",
             "reference_images": [{"img_id": "IMG_001", "note": "the tower"}]}
    return [call("query_knowledge", skill_name="text_rendering"), call("image_search", query="Eiffel Tower", top_k=2),
            AIMessage(content=json.dumps(final))]


def test_tool_calling_fake_drives_a_native_trajectory():
    model = ToolCallingFakeChatModel(responses=native_script())
    agent = create_genevolve_agent(model, protocol="native", renderer="none")
    out = agent.invoke({"request": PARIS})
    assert out["termination"] == "answer" and out["tool_calls"] == 2
    assert out["program"].reference_images[0].img_id == "IMG_001"
    bound = [t["function"]["name"] for t in model.requests[0]["tools"]]
    assert bound == ["search", "image_search", "query_knowledge", "submit_program"]  # native: with the structured answer
    # native protocol: tool results go back as ToolMessages answering the model's call ids
    last = model.requests[-1]["messages"]
    tool_messages = [m for m in last if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in tool_messages] == ["call_query_knowledge", "call_image_search"]
    assert "IMG_001" in tool_messages[1].content


def test_native_protocol_needs_bind_tools():
    with pytest.raises(TypeError, match="protocol 'native' needs a chat model that implements bind_tools; FakeListChatModel"):
        create_genevolve_agent(FakeListChatModel(responses=["x"]), protocol="native")


def test_a_failing_model_ends_the_trajectory_with_error():
    class Broken(FakeListChatModel):
        def _call(self, *args, **kwargs):
            raise ConnectionError("gateway down")

    out = create_genevolve_agent(Broken(responses=["x"]), renderer="none").invoke({"request": "a fox"})
    assert out["termination"] == "error" and "ConnectionError: gateway down" in out["error"]


@pytest.mark.parametrize("context", [{"max_tool_calls": 2}, AgentContext(max_tool_calls=2)], ids=["dict", "object"])
def test_factory_fields_are_defaults_that_a_run_context_overrides(context):
    agent = create_genevolve_agent(FakeListChatModel(responses=PARIS_SCRIPT), renderer="none", max_rounds=3, max_tool_calls=1)
    out = agent.invoke({"request": PARIS}, context=context)
    # max_rounds=3 from the factory, max_tool_calls=2 from the run: two tools, then the final step
    assert out["rounds"] == 3 and out["tool_calls"] == 2
    finals = [m for m in out["messages"] if isinstance(m, HumanMessage) and m.additional_kwargs.get("genevolve_control") == "final_step"]
    assert len(finals) == 1


def test_bad_factory_fields_fail_at_once_with_the_field_named():
    with pytest.raises(ValueError, match=r"unknown context field\(s\) \['max_round'\]"):
        create_genevolve_agent(max_round=3)
    with pytest.raises(ValueError, match="unknown renderer 'dalle' \\(context field 'renderer'\\)"):
        create_genevolve_agent(renderer="dalle")


def test_a_langchain_tool_object_is_the_search_backend():
    calls: list[str] = []

    @tool
    def encyclopedia(query: str) -> list[dict]:
        """Look a topic up in a tiny encyclopedia."""
        calls.append(query)
        return [{"title": "Red fox", "url": "https://example.org/fox", "snippet": "The red fox has a white-tipped tail."}]

    script = ['<think>x</think><tool_call>{"name": "search", "arguments": {"queries": ["red fox"]}}</tool_call>', answer("a red fox")]
    out = create_genevolve_agent(FakeListChatModel(responses=script), search=encyclopedia, renderer="none").invoke({"request": "a red fox"})
    observation = next(m.content for m in out["messages"] if isinstance(m, ToolMessage))
    assert calls == ["red fox"] and "white-tipped tail" in observation and "https://example.org/fox" in observation


def test_without_a_model_the_context_policy_runs():
    out = create_genevolve_agent(renderer="none").invoke({"request": "A red fox in fresh snow"})
    assert out["termination"] == "answer" and out["program"].gen_prompt


async def test_chat_openai_is_one_model_among_others(scripted_server):
    from langchain_openai import ChatOpenAI

    server = scripted_server({PARIS: PARIS_SCRIPT})
    model = ChatOpenAI(model="served-model", base_url=server.base_url, api_key="EMPTY", max_retries=0)
    out = await create_genevolve_agent(model, renderer="none").ainvoke({"request": PARIS})
    assert out["termination"] == "answer" and out["rounds"] == 5
    bodies = server.successful_bodies()
    assert len(bodies) == 5 and "tools" not in bodies[0] and bodies[0]["model"] == "served-model"


def test_unknown_context_keys_are_rejected_in_process():
    from genevolve_graph import build_graph

    with pytest.raises(ValueError, match=r"unknown context field\(s\) \['max_round'\]; known fields: \[.*'max_rounds'"):
        build_graph().invoke({"request": "a fox"}, context={"max_round": 3})
    with pytest.raises(ValueError, match="unknown image search backend 'pinterest' \\(context field 'image_search'\\)"):
        build_graph().invoke({"request": "a fox"}, context={"image_search": "pinterest"})


def test_context_schema_has_fixed_choices_and_no_other_keys():
    from genevolve_graph.agent.graph import graph

    schema = graph.get_context_jsonschema()
    props = schema["properties"]
    assert schema["additionalProperties"] is False
    assert props["policy"]["enum"] == ["rules", "openai"] and props["protocol"]["enum"] == ["genevolve", "native"]
    assert props["search"]["enum"] == ["local", "serper", "searxng", "tavily", "ddgs", "langchain"]
    assert props["image_search"]["enum"] == ["local", "serper", "searxng", "tavily", "ddgs"]
    assert props["renderer"]["enum"] == ["preview", "diffusers", "service", "gemini", "none"]


def test_factory_agents_record_experiment_policy_and_model_in_checkpoint_metadata(tmp_path):
    """Issue 24, item 5: only the tracing tags carried the experiment, so ``export --experiment``
    found none of a factory-built agent's threads."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver
    from typer.testing import CliRunner

    from genevolve_graph.cli.app import _register_commands, app

    db = tmp_path / "trace.sqlite"
    conn = sqlite3.connect(db, check_same_thread=False)
    saver = SqliteSaver(conn)
    try:
        model = FakeListChatModel(responses=[answer("A red fox in fresh snow.")])
        agent = create_genevolve_agent(model, checkpointer=saver, renderer="none", experiment="expA")
        agent.invoke({"request": "A red fox in fresh snow"}, {"configurable": {"thread_id": "fox-1"}})
        other = create_genevolve_agent(checkpointer=saver, renderer="none", experiment="expB")
        other.invoke({"request": "A red fox in fresh snow"}, {"configurable": {"thread_id": "fox-2"}})
        [latest] = list(saver.list({"configurable": {"thread_id": "fox-1"}}, limit=1))
        assert latest.metadata["experiment"] == "expA" and latest.metadata["policy"] == "FakeListChatModel"
        assert latest.metadata["model"] == "FakeListChatModel" and latest.metadata["protocol"] == "genevolve"
        [rules] = list(saver.list({"configurable": {"thread_id": "fox-2"}}, limit=1))
        assert rules.metadata["policy"] == "rules" and rules.metadata["model"] == "rules-v1"
    finally:
        conn.close()
    _register_commands()
    result = CliRunner().invoke(app, ["export", "--checkpoint", f"sqlite:///{db}", "--out", str(tmp_path / "sft.jsonl"),
                                      "--experiment", "expA", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "sft.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "A red fox in fresh snow" in rows[0]
