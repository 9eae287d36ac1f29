"""Caller contexts are confined (genevolve_graph.core.guard); contexts built in Python are not."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from genevolve_graph import AgentContext
from genevolve_graph.agent.embed import agent_node, agent_subgraph, as_runnable
from genevolve_graph.core.guard import ContextRefused, OperatorSettings, check_caller_context
from genevolve_graph.core.state import Program

from tests.scripts import PARIS


@pytest.fixture
def root(tmp_path, monkeypatch):
    folder = tmp_path / "root"
    folder.mkdir()
    monkeypatch.setenv("GENEVOLVE_ALLOWED_ROOTS", str(folder))
    monkeypatch.setenv("GENEVOLVE_RENDERS_DIR", str(folder))  # the one folder a caller's run writes into
    monkeypatch.delenv("GENEVOLVE_ALLOWED_BASE_URLS", raising=False)
    for name in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "SERPER_BASE_URL", "TAVILY_BASE_URL", "SEARXNG_URL"):
        monkeypatch.delenv(name, raising=False)
    return folder


def test_endpoints_must_be_configured_by_the_operator(root, monkeypatch):
    refused = AgentContext.coerce({"policy": "openai", "base_url": "http://evil.example/v1", "model": "m"})
    with pytest.raises(ContextRefused, match=r"base_url = 'http://evil.example/v1' is refused.*GENEVOLVE_ALLOWED_BASE_URLS"):
        check_caller_context(refused)
    monkeypatch.setenv("GENEVOLVE_ALLOWED_BASE_URLS", "http://vllm.internal:8000/v1, https://api.example.com")
    check_caller_context(AgentContext.coerce({"policy": "openai", "base_url": "http://vllm.internal:8000/v1/", "model": "m"}))
    check_caller_context(AgentContext.coerce({"policy": "openai", "base_url": "https://api.example.com/v1", "model": "m"}))
    for url in ("http://vllm.internal:8001/v1", "http://vllm.internal:8000/v10", "https://api.example.com.evil.io/v1",
                "http://api.example.com/v1", "file:///etc/passwd"):
        with pytest.raises(ContextRefused):
            check_caller_context(AgentContext.coerce({"policy": "openai", "base_url": url, "model": "m"}))
    # the server's own default endpoint is configured by definition
    monkeypatch.setenv("GENEVOLVE_BASE_URL", "http://127.0.0.1:9/v1")
    check_caller_context(AgentContext.coerce({"policy": "openai", "model": "m"}))
    # every endpoint option that would carry a server key, and the service token's endpoints
    for options in ({"serper_base_url": "http://evil.example"}, {"tavily_base_url": "http://evil.example"},
                    {"gemini_base_url": "http://evil.example"}, {"searxng_url": "http://evil.example"},
                    {"service_urls": ["http://evil.example:8000"]}):
        with pytest.raises(ContextRefused, match=next(iter(options))):
            check_caller_context(AgentContext.coerce({"options": options}))


def test_paths_stay_under_the_roots(root, tmp_path):
    (root / "corpus.jsonl").write_text("{}\n")
    check_caller_context(AgentContext.coerce({"corpus": str(root / "corpus.jsonl"), "output_dir": str(root / "new" / "dir")}))
    (root / "escape").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ContextRefused, match=rf"output_dir = .* is refused: a caller's run writes only inside the server's renders folder {root}.*GENEVOLVE_RENDERS_DIR"):
        check_caller_context(AgentContext.coerce({"output_dir": str(tmp_path)}))
    for field, value in (("corpus", "/etc/passwd"), ("image_dir", str(root / "..")),
                         ("skills_dir", str(root / "escape")), ("system_prompt_file", "~/.ssh/id_rsa")):
        with pytest.raises(ContextRefused, match=rf"{field} = .* is refused: caller paths must stay under {root}.*GENEVOLVE_ALLOWED_ROOTS"):
            check_caller_context(AgentContext.coerce({field: value}))
    for options in ({"image_download_dir": "/tmp"}, {"pipeline": "/opt/models/x"}, {"output_name": "../x.png"},
                    {"output_name": "/tmp/x.png"}, {"output_name": "README.md"}, {"output_name": "traces.sqlite"},
                    {"output_name": ".png"}, {"allow_hosts": ["127.0.0.1:22"]}, {"langchain_search": "os:system"},
                    {"pipeline_class": "subprocess:Popen"}):
        with pytest.raises(ContextRefused, match=next(iter(options))):
            check_caller_context(AgentContext.coerce({"options": options}))
    check_caller_context(AgentContext.coerce({"options": {"pipeline": "Qwen/Qwen-Image-Edit-2511", "output_name": "a.png"}}))


def test_default_roots_are_the_working_directory_and_the_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("GENEVOLVE_ALLOWED_ROOTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path / "..")
    settings = OperatorSettings.from_env()
    assert settings.roots == (tmp_path.parent.resolve(), (tmp_path / "cache" / "genevolve-graph").resolve())


def test_dict_contexts_are_refused_by_as_runnable_and_agent_node_at_once(root, tmp_path):
    with pytest.raises(ContextRefused, match="output_dir"):
        as_runnable(context={"output_dir": str(tmp_path / "elsewhere")})
    with pytest.raises(ContextRefused, match="base_url"):
        agent_node({"policy": "openai", "base_url": "http://evil.example/v1", "model": "m"})
    # a dict within the rules works, and the object a Python caller builds is its own business
    assert isinstance(as_runnable(context={"renderer": "preview", "output_dir": str(root)}).invoke(PARIS), Program)
    assert (root / "image.png").exists() or list(root.iterdir())
    assert isinstance(as_runnable(context=AgentContext(renderer="none", output_dir=str(tmp_path))).invoke(PARIS), Program)


class Parent(TypedDict, total=False):
    request: str
    program: Program | None
    termination: str | None


def test_a_parent_passing_a_dict_context_to_the_subgraph_is_confined(root, tmp_path):
    builder = StateGraph(Parent)
    builder.add_node("agent", agent_subgraph())
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    app = builder.compile()
    with pytest.raises(ContextRefused, match="output_dir"):
        app.invoke({"request": PARIS}, context={"output_dir": str(tmp_path / "elsewhere")})
    assert not (tmp_path / "elsewhere").exists()
    done = app.invoke({"request": PARIS}, context={"output_dir": str(root)})
    assert done["termination"] == "answer" and list(root.rglob("*.png"))


def test_a_served_graph_confines_every_context(root, tmp_path):
    from genevolve_graph.agent.graph import build_graph, graph

    with pytest.raises(ContextRefused, match="output_dir"):
        graph.invoke({"request": PARIS}, context=AgentContext(output_dir=str(tmp_path / "elsewhere")))
    # a hostile thread id only names the run's folder, cleaned, inside the renders folder
    done = build_graph(confine=True).invoke({"request": PARIS}, {"configurable": {"thread_id": "../../escape"}},
                                            context={"output_dir": str(root), "renderer": "preview"})
    assert not (tmp_path / "escape.png").exists()
    written = Path(done["render"].output_path)
    assert written.is_file() and written.parent.parent == root.resolve() and ".." not in written.parts



def test_guide_memory_paths_stay_under_the_roots(root, tmp_path):
    """guidance='retrieve' reads a caller-named buffer folder and embedding model: both are
    paths a caller sends, so both stay under the roots (a hub id stays allowed)."""
    (root / "buffer").mkdir()
    check_caller_context(AgentContext.coerce({"guidance": "retrieve", "guide_dir": str(root / "buffer"),
                                              "embedding_model": "Qwen/Qwen3-Embedding-0.6B"}))
    for field, value in (("guide_dir", str(tmp_path)), ("embedding_model", str(tmp_path)), ("embedding_model", "~/.cache/x")):
        with pytest.raises(ContextRefused, match=rf"{field} = .* is refused: caller paths must stay under {root}"):
            check_caller_context(AgentContext.coerce({"guidance": "retrieve", field: value}))
