"""The graph's shape: Mermaid snapshot, the Studio entry in langgraph.json, the context form."""

from __future__ import annotations

from pathlib import Path

from genevolve_graph import AgentContext
from genevolve_graph.agent.graph import build_builder, graph

ROOT = Path(__file__).resolve().parents[2]


def test_mermaid_snapshot(snapshot):
    assert graph.get_graph().draw_mermaid(with_styles=False) == snapshot


def test_studio_graph_has_no_checkpointer_and_a_context_form():
    assert graph.checkpointer is None
    schema = graph.get_context_jsonschema()
    props = schema["properties"]
    assert props["policy"]["description"].startswith("Planner policy")
    assert props["temperature"]["default"] == 0.6 and props["max_rounds"]["default"] == 11
    assert "api_key" not in props  # secrets never go through the context


def test_langgraph_json_is_valid_and_its_graph_compiles():
    from langgraph_cli.config import validate_config_file

    config = validate_config_file(ROOT / "langgraph.json")
    path, _, attr = config["graphs"]["genevolve"].partition(":")
    assert (ROOT / path).is_file() and attr == "make_graph"
    from genevolve_graph.serving.server import make_graph

    served = make_graph(None)  # a read access: no run context
    assert served is graph and served.checkpointer is None
    assert served.get_graph().nodes.keys() >= {"planner", "tools", "binder", "emitter", "review", "render"}


def test_builder_is_reusable_as_a_subgraph():
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class Outer(TypedDict, total=False):
        request: str
        program: object
        termination: str

    agent = build_builder().compile()
    outer = StateGraph(Outer)
    outer.add_node("agent", agent)
    outer.add_edge(START, "agent")
    outer.add_edge("agent", END)
    result = outer.compile().invoke({"request": "a red fox in the snow"}, context=AgentContext(renderer="none"))
    assert result["termination"] == "answer" and result["program"].gen_prompt.startswith("a red fox")


def test_context_accepts_dicts_and_rejects_unknown_fields():
    assert AgentContext.coerce({"policy": "rules", "max_rounds": 5}).max_rounds == 5
    try:
        AgentContext.coerce({"polcy": "rules"})
    except ValueError as exc:
        assert "polcy" in str(exc) and "known fields" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("unknown field accepted")
