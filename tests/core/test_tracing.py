"""What a LangChain tracer (LangSmith's included) sees of a trajectory, collected offline by
a callback handler: the policy call is a run named ``policy``, each tool is a tool run, and
runs carry the default tags ``genevolve``, ``policy:<name>`` and ``experiment:<name>``."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run

from genevolve_graph import AgentContext, build_graph, create_genevolve_agent

from tests.scripts import PARIS, PARIS_SCRIPT


class Collector(BaseTracer):
    """Keeps every finished run tree, flattened."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        stack = [run]
        while stack:
            current = stack.pop()
            self.runs.append(current)
            stack.extend(current.child_runs)

    def named(self, name: str) -> list[Run]:
        return [r for r in self.runs if r.name == name]


def test_a_chat_model_policy_traces_as_policy_runs_with_tool_runs_and_tags():
    collector = Collector()
    agent = create_genevolve_agent(FakeListChatModel(responses=PARIS_SCRIPT), renderer="none", experiment="exp-7")
    agent.invoke({"request": PARIS}, {"callbacks": [collector]})
    policy_runs = collector.named("policy")
    assert len(policy_runs) == 5 and {r.run_type for r in policy_runs} == {"llm"}
    for run in policy_runs:
        assert {"genevolve", "policy:FakeListChatModel", "experiment:exp-7"} <= set(run.tags)
    tool_runs = [r for r in collector.runs if r.run_type == "tool"]
    assert [r.name for r in sorted(tool_runs, key=lambda r: r.start_time)] == ["query_knowledge", "search", "image_search", "query_knowledge"]
    image_run = next(r for r in tool_runs if r.name == "image_search")
    assert "Eiffel Tower" in str(image_run.inputs) and "IMG_001" in str(image_run.outputs)
    assert all("genevolve" in r.tags for r in tool_runs)
    [root] = [r for r in collector.runs if r.parent_run_id is None]
    assert root.name == "genevolve" and {"genevolve", "policy:FakeListChatModel", "experiment:exp-7"} <= set(root.tags)


def test_the_rules_planner_is_a_policy_run_too():
    collector = Collector()
    build_graph().invoke({"request": "A red fox in fresh snow"}, {"callbacks": [collector]},
                         context=AgentContext(renderer="none", experiment="baseline"))
    policy_runs = collector.named("policy")
    assert policy_runs and {r.run_type for r in policy_runs} == {"chain"}
    assert {"genevolve", "policy:rules", "experiment:baseline"} <= set(policy_runs[0].tags)
    assert {r.name for r in collector.runs if r.run_type == "tool"} >= {"search", "image_search"}


def test_recorded_runs_and_server_runs_carry_the_default_tags():
    from types import SimpleNamespace

    from genevolve_graph.agent.runner import run_config
    from genevolve_graph.serving.server import make_graph

    ctx = AgentContext(renderer="none", experiment="exp-9")
    config = run_config(ctx, "thread-1")
    assert config["tags"] == ["genevolve", "policy:rules", "experiment:exp-9"]
    collector = Collector()
    build_graph().invoke({"request": "a teapot"}, {**config, "callbacks": [collector]}, context=ctx)
    [root] = [r for r in collector.runs if r.parent_run_id is None]
    assert root.tags[:3] == ["genevolve", "policy:rules", "experiment:exp-9"]
    served = make_graph(SimpleNamespace(context={"policy": "rules", "experiment": "exp-9"}))
    assert served.config["tags"] == ["genevolve", "policy:rules", "experiment:exp-9"]
