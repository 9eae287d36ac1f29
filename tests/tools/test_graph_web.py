"""The agent graph with the web backends: the rules policy searches through the
Serper-compatible server, image search downloads from the image host, and a rejected
image shows its reason in the observation while the run goes on to a program."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from genevolve_graph.core.context import AgentContext
from genevolve_graph.agent.graph import build_graph, recursion_limit
from genevolve_graph.core.protocol import SKILL_NAMES


@pytest.fixture
def skills_dir(tmp_path: Path) -> Path:
    """Minimal guides for the eight skills (the rules policy reads their triggers)."""
    directory = tmp_path / "skills"
    directory.mkdir()
    for name in SKILL_NAMES:
        (directory / f"{name}.md").write_text(
            f"---\nname: {name}\nsummary: test guide for {name}\ntriggers: [{name.split('_')[0]}]\n---\n"
            f"## When to use\nTests.\n\n## Constraints to write into the prompt\n- keep {name} right\n",
            encoding="utf-8",
        )
    return directory


async def test_rejected_image_reason_reaches_the_observation_and_the_run_finishes(servers, web_options, skills_dir, monkeypatch) -> None:
    monkeypatch.setenv("SERPER_API_KEY", servers.search_state.serper_key)
    monkeypatch.setenv("SERPER_BASE_URL", f"{servers.search.url}/serper")
    img = servers.image_url
    servers.search_state.image_results_fn = lambda query, n: [
        f"{img}/html-as-jpeg",
        f"{img}/redirect?to=http://169.254.169.254/latest/meta-data/",
        f"{img}/img/ref-0",
        f"{img}/img/ref-1",
        f"{img}/img/ref-2",
        f"{img}/img/ref-3",
    ][:n]
    ctx = AgentContext(policy="rules", search="serper", image_search="serper", renderer="none", skills_dir=str(skills_dir), options=web_options)
    graph = build_graph(InMemorySaver())
    config = {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": recursion_limit(ctx)}
    result = await graph.ainvoke({"request": "A watercolor poster of the Okapi in the Ituri rainforest"}, config, context=ctx)

    observations = [m.content for m in result["messages"] if isinstance(m, ToolMessage)]
    searched = [o for o in observations if o.startswith("--- search result for [")]
    assert searched and "example.org" in searched[0]  # the Serper-compatible server answered
    image_obs = [o for o in observations if o.startswith("--- image search result for [")]
    assert len(image_obs) == 2  # the rules policy looks up both named subjects
    block = image_obs[0]
    assert f"(dropped: {img}/html-as-jpeg: not an allowed image format (looks like HTML)" in block
    assert "169.254.169.254 is link-local" in block
    assert "IMG_001: title:" in block and f"  url: {img}/img/ref-0" in block
    # Both searches returned the same images: each was downloaded once and kept its id.
    assert "IMG_001: title:" in image_obs[1] and "IMG_004" not in image_obs[1]
    assert servers.image_state.hits["/img/ref-0"] == 1 and servers.image_state.hits["/html-as-jpeg"] == 1

    assert result["termination"] == "answer"
    program = result["program"]
    assert program.reference_images, "the program should use the downloaded reference"
    ref = program.reference_images[0]
    assert ref.url == f"{img}/img/ref-0"
    assert Path(ref.local_path).is_file() and Path(ref.local_path).is_relative_to(web_options["image_download_dir"])


async def test_missing_key_is_an_observation_not_an_exception(servers, web_options, skills_dir) -> None:
    ctx = AgentContext(policy="rules", search="serper", image_search="serper", renderer="none", skills_dir=str(skills_dir), options=web_options)
    graph = build_graph(InMemorySaver())
    config = {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": recursion_limit(ctx)}
    result = await graph.ainvoke({"request": "A photo of the Golden Gate Bridge at dawn"}, config, context=ctx)
    observations = [m.content for m in result["messages"] if isinstance(m, ToolMessage)]
    assert any("search unavailable: SERPER_API_KEY is not set" in o for o in observations)
    assert any("image_search unavailable: SERPER_API_KEY is not set" in o for o in observations)
    assert result["termination"] in ("answer", "no_answer")


async def test_keys_stay_out_of_checkpoints(servers, web_options, skills_dir, monkeypatch) -> None:
    """The key is read from the environment at call time: it is in no checkpoint, whether
    the backend accepts it or rejects it."""
    monkeypatch.setenv("SERPER_BASE_URL", f"{servers.search.url}/serper")
    saver = InMemorySaver()
    graph = build_graph(saver)
    ctx = AgentContext(policy="rules", search="serper", image_search="serper", renderer="none", skills_dir=str(skills_dir), options=web_options)
    threads = []
    for key, request in ((servers.search_state.serper_key, "A photo of the Okapi"), (servers.search_state.serper_key + "-rejected", "A photo of the Quagga")):
        monkeypatch.setenv("SERPER_API_KEY", key)
        thread = str(uuid.uuid4())
        threads.append(thread)
        config = {"configurable": {"thread_id": thread}, "recursion_limit": recursion_limit(ctx)}
        await graph.ainvoke({"request": request}, config, context=ctx)
    stored = []
    for thread in threads:
        for item in saver.list({"configurable": {"thread_id": thread}}):
            stored.append(repr(item.checkpoint) + repr(item.metadata) + repr(item.pending_writes))
    dump = "\n".join(stored)
    assert "https://example.org/okapi/1" in dump  # results are recorded ...
    assert "rejected the API key (HTTP 403); check SERPER_API_KEY" in dump  # ... and so is the failure ...
    assert servers.search_state.serper_key not in dump  # ... the key is not
