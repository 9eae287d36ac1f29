"""Long-term memory: Decision Guides in a LangGraph store or a folder, retrieved at inference.

Real parts: a tiny local sentence-transformers model (built offline, never downloaded) embeds
the guides; ``InMemoryStore`` with that index, the folder ``ExperienceBuffer``, the real
graph with the rules planner or a scripted OpenAI-compatible server, a SQLite checkpointer;
``PostgresStore`` when a test database with pgvector is configured.
"""

from __future__ import annotations

import math
import os

import pytest

pytest.importorskip("sentence_transformers", reason="guide memory tests embed with a tiny sentence-transformers model (the 'train' extra)")

from langgraph.store.memory import InMemoryStore  # noqa: E402

from genevolve_graph import AgentContext  # noqa: E402
from genevolve_graph.agent.graph import build_graph  # noqa: E402
from genevolve_graph.experience.memory import (  # noqa: E402
    GuideMemory,
    GuideMemoryError,
    StoreGuideMemory,
    guided_system_prompt,
    store_index,
)
from genevolve_graph.nodes.planner import initial_messages  # noqa: E402
from genevolve_graph.persistence import open_checkpointer  # noqa: E402
from genevolve_graph.agent.runner import run_with_saver  # noqa: E402
from genevolve_graph.experience.buffer import ExperienceBuffer  # noqa: E402
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.experience.guides import DecisionGuide  # noqa: E402

FOX_REQUEST = "A red fox sleeping in fresh snow under a pine tree"
OTHER_REQUEST = "Portrait of a chemist in her laboratory, oil painting"


def guide(trigger: str, summary: str, **guidance: list[str]) -> DecisionGuide:
    return DecisionGuide.model_validate(
        {"retrieval_key": {"trigger": trigger, "summary": summary}, "decision_guidance": guidance or {"tool_plan": ["Search the exact facts first"]}}
    )


FOX = guide("red fox sleeping in fresh snow", FOX_REQUEST, skill_routing=["Read aesthetic_drawing for the soft dawn light"])
TOWER = guide("landmark with exact measurements", "The Eiffel Tower as a blueprint with its height written on it")


@pytest.fixture(scope="module")
def embedder():
    from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer

    return SentenceEmbedder(build_tiny_sentence_transformer("static"), name="tiny-static")


@pytest.fixture()
def store(embedder) -> InMemoryStore:
    return InMemoryStore(index=store_index(embedder))


# --------------------------------------------------------------------------- one interface, two homes


def test_store_and_folder_memories_share_the_interface_and_the_scores(store, embedder, tmp_path):
    in_store = StoreGuideMemory(store)
    folder = ExperienceBuffer(embedder, path=tmp_path / "buf")
    for memory in (in_store, folder):
        assert isinstance(memory, GuideMemory)
        memory.add([FOX, TOWER])
        assert len(memory) == 2
    for query in (FOX_REQUEST, "a fox in the snow", OTHER_REQUEST):
        a, b = in_store.search([query])[0], folder.search([query])[0]
        assert a.guide.id == b.guide.id and a.score == pytest.approx(b.score, abs=1e-5)
    # top-1 behind the same gate: the same guide passes, an unrelated request gets none
    assert in_store.retrieve([FOX.key_text()])[0].guide.id == FOX.id
    assert in_store.retrieve([OTHER_REQUEST]) == [None] == folder.retrieve([OTHER_REQUEST])
    assert in_store.get(FOX.id) == FOX and in_store.get("nope") is None


def test_store_capacity_drops_the_oldest(store):
    memory = StoreGuideMemory(store, capacity=3)
    guides = [guide(f"trigger {i}", f"summary number {i}") for i in range(5)]
    for g in guides:
        memory.add(g)
    assert [g.id for g in memory.guides()] == [g.id for g in guides[2:]]


def test_a_store_without_an_index_is_refused_with_the_fix():
    with pytest.raises(GuideMemoryError, match="store_index"):
        StoreGuideMemory(InMemoryStore())


# --------------------------------------------------------------------------- inference


def offline(tmp_path, **overrides) -> AgentContext:
    return AgentContext(policy="rules", renderer="none", output_dir=str(tmp_path), **overrides)


async def run(request: str, ctx: AgentContext, tmp_path, store=None, thread="t"):
    async with open_checkpointer(f"sqlite:///{tmp_path / 'trace.sqlite'}") as saver:
        result = await run_with_saver(request, ctx, saver, thread_id=thread, store=store)
        graph = build_graph(saver, store=store)
        config = {"configurable": {"thread_id": thread}}
        snapshot = await graph.aget_state(config)
        history = [s async for s in graph.aget_state_history(config)]
    return result, snapshot, history


async def test_retrieved_guide_enters_the_system_prompt_as_the_teacher_reads_it(store, tmp_path):
    StoreGuideMemory(store).add([FOX, TOWER])
    ctx = offline(tmp_path, guidance="retrieve")
    result, snapshot, history = await run(FOX_REQUEST, ctx, tmp_path, store)
    assert result.termination == "answer", result.error
    system = result.messages[0].content
    plain = initial_messages(FOX_REQUEST, offline(tmp_path))[0].content
    assert system == guided_system_prompt(plain, FOX.render()) == plain + "\n\n" + FOX.render()
    # the same bytes as the SDL teacher branch of the trainer
    trainer = pytest.importorskip("genevolve_graph.training.trainer", reason="the teacher branch needs the 'train' extra")
    teacher = trainer.teacher_messages([{"role": "system", "content": plain}, {"role": "user", "content": FOX_REQUEST}], FOX.render())
    assert teacher[0]["content"] == system
    # recorded in the trajectory: state and every checkpoint's metadata
    assert snapshot.values["guide"]["id"] == FOX.id and snapshot.values["guide"]["source"] == "store"
    assert snapshot.values["guide"]["score"] >= 0.84 and result.guide["id"] == FOX.id
    assert all(s.metadata.get("guide_id") == FOX.id for s in history)
    assert history[0].metadata["guide_score"] == pytest.approx(snapshot.values["guide"]["score"], abs=1e-6)


async def test_guidance_is_off_by_default_and_below_the_gate_nothing_is_added(store, tmp_path):
    StoreGuideMemory(store).add([FOX, TOWER])
    plain = initial_messages(FOX_REQUEST, offline(tmp_path))[0].content
    off, snap_off, hist_off = await run(FOX_REQUEST, offline(tmp_path), tmp_path, store, thread="off")
    assert off.messages[0].content == plain and off.guide is None and "guide_id" not in hist_off[0].metadata
    miss, snap_miss, hist_miss = await run(OTHER_REQUEST, offline(tmp_path, guidance="retrieve"), tmp_path, store, thread="miss")
    assert miss.termination == "answer" and miss.guide is None
    assert miss.messages[0].content == initial_messages(OTHER_REQUEST, offline(tmp_path))[0].content
    assert hist_miss[0].metadata["guide_id"] == ""


async def test_guides_from_a_folder_buffer(tmp_path):
    from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer

    model_dir = tmp_path / "embedder"
    build_tiny_sentence_transformer("static", directory=model_dir)
    buffer = ExperienceBuffer(SentenceEmbedder(str(model_dir)), path=tmp_path / "buffer")
    buffer.add([FOX, TOWER])
    buffer.save()
    ctx = offline(tmp_path, guidance="retrieve", guide_dir=str(tmp_path / "buffer"), embedding_model=str(model_dir))
    result, snapshot, _ = await run(FOX_REQUEST, ctx, tmp_path)
    assert result.guide is not None, (result.termination, result.error)
    assert result.guide["id"] == FOX.id and result.guide["source"] == "folder"
    assert result.messages[0].content.endswith("\n\n" + FOX.render())


async def test_retrieve_without_any_memory_ends_with_a_clear_error(tmp_path):
    result, _, _ = await run(FOX_REQUEST, offline(tmp_path, guidance="retrieve"), tmp_path)
    assert result.termination == "error" and "build_graph(store=" in result.error and "guide_dir" in result.error
    result, _, _ = await run(FOX_REQUEST, offline(tmp_path, guidance="retrieve", guide_dir=str(tmp_path / "none")), tmp_path, thread="t2")
    assert result.termination == "error" and "no experience buffer" in result.error


async def test_any_model_gets_the_guide_over_http(store, scripted_server, tmp_path):
    StoreGuideMemory(store).add([FOX])
    server = scripted_server({FOX_REQUEST: ['<answer>{"gen_prompt": "a red fox asleep in snow", "reference_images": []}</answer>']})
    ctx = AgentContext(policy="openai", base_url=server.base_url, model="m", renderer="none", output_dir=str(tmp_path),
                       guidance="retrieve", retry_initial_delay=0.01)
    result, _, _ = await run(FOX_REQUEST, ctx, tmp_path, store)
    assert result.termination == "answer"
    sent = server.successful_bodies()[0]["messages"][0]["content"]
    assert sent.endswith("\n\n" + FOX.render()) and sent == result.messages[0].content


def test_the_graph_reads_the_store_it_was_compiled_with(store, tmp_path):
    """The standard LangGraph wiring: compile(store=...), nodes read runtime.store; a plain
    invoke (no runner) still records the guide in the state."""
    StoreGuideMemory(store).add([FOX])
    graph = build_graph(store=store)
    out = graph.invoke({"request": FOX_REQUEST}, context=offline(tmp_path, guidance="retrieve"))
    assert out["guide"]["id"] == FOX.id and not math.isnan(out["guide"]["score"])


def test_postgres_store_holds_guides(embedder):
    url = os.environ.get("GENEVOLVE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set GENEVOLVE_TEST_POSTGRES_URL to a Postgres database with pgvector to run PostgresStore")
    psycopg = pytest.importorskip("psycopg", reason="PostgresStore needs psycopg (the 'postgres' extra)")
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select 1 from pg_available_extensions where name = 'vector'").fetchone()
    if row is None:
        pytest.skip(f"the Postgres server at {url.rsplit('@', 1)[-1]} has no pgvector extension; install postgresql-NN-pgvector to run PostgresStore")
    from langgraph.store.postgres import PostgresStore

    with PostgresStore.from_conn_string(url, index=store_index(embedder)) as pg:
        pg.setup()
        memory = StoreGuideMemory(pg, namespace=("genevolve-test", os.urandom(4).hex()))
        memory.add([FOX, TOWER])
        hit = memory.retrieve([FOX.key_text()])[0]
        assert hit is not None and hit.guide.id == FOX.id and hit.score == pytest.approx(1.0, abs=1e-4)
        assert memory.retrieve([OTHER_REQUEST]) == [None]


def test_command_line_guidance_from_a_folder(tmp_path):
    import json
    import subprocess
    import sys

    from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer

    model_dir = tmp_path / "embedder"
    build_tiny_sentence_transformer("static", directory=model_dir)
    buffer = ExperienceBuffer(SentenceEmbedder(str(model_dir)), path=tmp_path / "buffer")
    buffer.add([FOX, TOWER])
    buffer.save()
    base = [sys.executable, "-m", "genevolve_graph.cli", "run", FOX_REQUEST, "--renderer", "none"]
    proc = subprocess.run([*base, "--out", str(tmp_path / "out"), "--guidance", "retrieve", "--guide-dir", str(tmp_path / "buffer"),
                           "--embedding-model", str(model_dir)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    program = json.loads((tmp_path / "out" / "program.json").read_text())
    assert program["guide"]["id"] == FOX.id and program["guide"]["source"] == "folder"
    bad = subprocess.run([*base, "--out", str(tmp_path / "bad"), "--guidance", "retrieve"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and [l for l in bad.stderr.splitlines() if l.startswith("error:")] == [
        "error: --guidance retrieve needs --guide-dir: the experience buffer folder a training run wrote (guides.jsonl)"]
    bad = subprocess.run([*base, "--out", str(tmp_path / "bad"), "--guidance", "always"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "choose off or retrieve" in bad.stderr


async def test_the_rules_planner_follows_a_retrieved_guide(store, tmp_path):
    """The offline planner reads the skills a guide routes to; its program still cites only
    what is about the request."""
    StoreGuideMemory(store).add([FOX])
    plain, _, _ = await run(FOX_REQUEST, offline(tmp_path), tmp_path, store, thread="plain")
    guided, _, _ = await run(FOX_REQUEST, offline(tmp_path, guidance="retrieve"), tmp_path, store, thread="guided")

    def skills(result) -> list[str]:
        return [m.tool_calls[0]["args"]["skill_name"] for m in result.messages
                if getattr(m, "tool_calls", None) and m.tool_calls[0]["name"] == "query_knowledge"]

    assert "aesthetic_drawing" not in skills(plain) and "aesthetic_drawing" in skills(guided)
    assert "focal point" in guided.program.gen_prompt and "focal point" not in plain.program.gen_prompt
    assert "Experience from similar requests" not in guided.program.gen_prompt


def test_guidance_benchmark_runs_and_reports_both_arms():
    import argparse
    import asyncio
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "guidance.py"
    spec = importlib.util.spec_from_file_location("guidance_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summary = asyncio.run(bench.main(argparse.Namespace(embedding_model="", gate=0.84)))
    assert summary["prompts"] == len(bench.CASES) and 0 < summary["guide_hits"] < summary["prompts"]
    assert summary["prompts_worse"] == 0 and summary["mean_score_retrieve"] >= summary["mean_score_off"]
