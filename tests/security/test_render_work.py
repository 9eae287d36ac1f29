"""Studio / dev-server callers, part 4: bounded work per run, and the operator's guide folder.

A render-graph run decodes at most ``MAX_TOTAL_PIXELS`` of references in all (checked from
the inline references' headers before any is decoded or stored); eight references each
within the per-image caps no longer add up to an unbounded amount of decoding. A
``guide_dir`` that is set is used even where the server brings its own store (as
``langgraph dev`` always does), instead of being ignored silently.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from genevolve_graph.safety.imaging import to_data_uri
from genevolve_graph.serving.render_graph import MAX_REFERENCES, MAX_TOTAL_PIXELS, render_graph


def flat_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_run_s_references_share_one_pixel_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("GENEVOLVE_RENDERS_DIR", str(tmp_path / "renders"))
    monkeypatch.setenv("GENEVOLVE_ALLOWED_ROOTS", str(tmp_path))
    big = to_data_uri(flat_png(4000, 2000))  # 8 MP each: within the per-image caps, tiny on the wire
    ids = [f"IMG_{i:03d}" for i in range(1, MAX_REFERENCES + 1)]
    assert len(ids) * 8_000_000 > MAX_TOTAL_PIXELS
    program = {"gen_prompt": "p", "reference_images": [{"img_id": i} for i in ids]}
    result = render_graph.invoke({"program": program, "reference_data": {i: big for i in ids}, "row_id": "r"},
                                 {"configurable": {"thread_id": "t"}}, context={"renderer": "preview", "output_dir": str(tmp_path / "renders")})
    assert result["render"].success is False
    assert f"more than {MAX_TOTAL_PIXELS:,} pixels together" in result["render"].error
    assert not (tmp_path / "renders").exists() or not [p for p in (tmp_path / "renders").rglob("*") if p.is_file()]
    few = {i: big for i in ids[:2]}  # 16 MP: fine
    done = render_graph.invoke({"program": {"gen_prompt": "p", "reference_images": [{"img_id": i} for i in few]},
                                "reference_data": few, "row_id": "r"}, {"configurable": {"thread_id": "t2"}}, context={"renderer": "preview", "output_dir": str(tmp_path / "renders")})
    assert done["render"].success, done["render"].error


async def test_a_guide_dir_that_is_set_is_used_even_beside_a_store(tmp_path):
    pytest.importorskip("sentence_transformers", reason="guide memory embeds with a tiny sentence-transformers model (the 'train' extra)")
    from langgraph.store.memory import InMemoryStore

    from genevolve_graph import AgentContext
    from genevolve_graph.agent.runner import run_with_saver
    from genevolve_graph.experience.buffer import ExperienceBuffer
    from genevolve_graph.experience.embedders import SentenceEmbedder
    from genevolve_graph.experience.guides import DecisionGuide
    from genevolve_graph.experience.memory import store_index
    from genevolve_graph.persistence import open_checkpointer
    from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer

    request = "A red fox sleeping in fresh snow under a pine tree"
    model_dir = tmp_path / "embedder"
    embedder = SentenceEmbedder(build_tiny_sentence_transformer("static", directory=model_dir), name="tiny")
    guide = DecisionGuide.model_validate({"retrieval_key": {"trigger": "red fox sleeping in fresh snow", "summary": request},
                                          "decision_guidance": {"tool_plan": ["Look up fox fur in winter first"]}})
    buffer = ExperienceBuffer(embedder, path=tmp_path / "buffer")
    buffer.add([guide])
    buffer.save()
    server_store = InMemoryStore(index=store_index(embedder))  # what a server brings: empty of guides
    ctx = AgentContext(policy="rules", renderer="none", output_dir=str(tmp_path), guidance="retrieve",
                       guide_dir=str(tmp_path / "buffer"), embedding_model=str(model_dir))
    async with open_checkpointer("memory") as saver:
        result = await run_with_saver(request, ctx, saver, thread_id="t", store=server_store)
    assert result.guide and result.guide["id"] == guide.id and result.guide["source"] == "folder", result.error
    assert "Look up fox fur in winter first" in result.messages[0].content
