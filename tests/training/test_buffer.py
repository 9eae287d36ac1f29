"""The experience buffer: capacity, the cosine gate, persistence, cross-process shipping."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from genevolve_graph.experience.buffer import ExperienceBuffer
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.experience.guides import DecisionGuide
from genevolve_graph.training.distill import GuideError, parse_guide, pick_pair


def guide(trigger: str, summary: str, bullet: str = "Search the exact facts first") -> DecisionGuide:
    return DecisionGuide.model_validate(
        {"retrieval_key": {"trigger": trigger, "summary": summary}, "decision_guidance": {"tool_plan": [bullet]}}
    )


FOX = guide("animal in a snowy scene", "A red fox sleeping in fresh snow under a pine tree")
TOWER = guide("landmark with exact measurements", "The Eiffel Tower as a blueprint with its height written on it")


@pytest.fixture()
def embedder(tiny_embedder):
    return SentenceEmbedder(tiny_embedder, name="tiny-static")


def test_top1_retrieval_respects_the_gate(embedder):
    buffer = ExperienceBuffer(embedder, gate=0.84)
    buffer.add([FOX, TOWER])
    same = buffer.retrieve([FOX.key_text()])[0]
    assert same is not None and same.guide.id == FOX.id and same.score == pytest.approx(1.0, abs=1e-5)

    unrelated = "Portrait of a chemist in her laboratory, oil painting"
    top = buffer.search([unrelated])[0]
    assert top is not None and top.score < 0.84
    assert buffer.retrieve([unrelated]) == [None]

    # the gate is inclusive: exactly at the score retrieves, just above it does not
    query = "a red fox sleeping in the snow"
    hit = buffer.search([query])[0]
    assert hit.guide.id == FOX.id
    buffer.gate = hit.score
    assert buffer.retrieve([query])[0].guide.id == FOX.id
    buffer.gate = hit.score + 1e-4
    assert buffer.retrieve([query]) == [None]


def test_capacity_drops_the_oldest(embedder):
    buffer = ExperienceBuffer(embedder, capacity=3)
    guides = [guide(f"trigger {i}", f"summary number {i}") for i in range(5)]
    for g in guides:
        buffer.add(g)
    assert [g.id for g in buffer.guides] == [g.id for g in guides[2:]]
    assert buffer.embeddings.shape[0] == 3


def test_save_reload_and_reembed_with_another_model(tmp_path, embedder, tiny_embedder):
    buffer = ExperienceBuffer(embedder, path=tmp_path / "buf")
    buffer.add([FOX, TOWER])
    buffer.save()
    meta = json.loads((tmp_path / "buf" / "meta.json").read_text())
    assert meta["count"] == 2 and meta["embedder"] == "tiny-static"

    again = ExperienceBuffer.load(tmp_path / "buf", embedder)
    assert [g.id for g in again.guides] == [FOX.id, TOWER.id]
    assert np.allclose(again.embeddings, buffer.embeddings)
    assert again.retrieve([TOWER.key_text()])[0].guide.id == TOWER.id

    class Counting(SentenceEmbedder):
        calls = 0

        def embed_keys(self, texts):
            Counting.calls += 1
            return super().embed_keys(texts)

    other = ExperienceBuffer.load(tmp_path / "buf", Counting(tiny_embedder, name="another-model"))
    assert Counting.calls == 1 and len(other) == 2  # keys embedded again for the new model

    with pytest.raises(FileNotFoundError, match="guides.jsonl"):
        ExperienceBuffer.load(tmp_path / "nothing", embedder)


@pytest.mark.parametrize("files_written", [0, 1, 2])
def test_a_crash_mid_save_never_reloads_a_guide_under_another_guides_vector(tmp_path, embedder, monkeypatch, files_written):
    """Issue 13 item 3: at capacity the rows shift; a save interrupted after ``files_written``
    files must not pair the new guides with the old vectors on reload (before the fix a query
    for one topic returned another topic's guide at score 1.000)."""
    buffer = ExperienceBuffer(embedder, capacity=2, path=tmp_path / "buf")
    buffer.add([FOX, TOWER])
    buffer.save()
    chemist = guide("portrait in a laboratory", "A chemist in her laboratory, painted in oils")
    buffer.add(chemist)  # FOX leaves: same row count, every row now holds another guide

    real_replace, landed = os.replace, []

    def crash(src, dst):
        if len(landed) == files_written:
            raise OSError("simulated crash during save")
        landed.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        buffer.save()
    monkeypatch.undo()

    again = ExperienceBuffer.load(tmp_path / "buf", embedder, capacity=2)
    assert len(again) == 2
    for stored in again.guides:
        hit = again.search([stored.key_text()])[0]
        assert hit.guide.id == stored.id and hit.score == pytest.approx(1.0, abs=1e-5)
    for topic in (FOX, TOWER, chemist):  # a query never lands on another topic's guide at full score
        hit = again.search([topic.key_text()])[0]
        assert hit.guide.id == topic.id or hit.score < 0.99


def test_export_import_gives_every_process_the_same_buffer(embedder):
    main, worker = ExperienceBuffer(embedder), ExperienceBuffer(embedder)
    added = main.add([FOX, TOWER])
    worker.import_entries(json.loads(json.dumps(main.export_entries(added))))  # as pickled across ranks
    assert [g.id for g in worker.guides] == [g.id for g in main.guides]
    assert np.allclose(worker.embeddings, main.embeddings)


def test_sentence_embedder_loads_a_local_qwen3_shaped_model(tmp_path):
    from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer

    build_tiny_sentence_transformer("qwen3", directory=tmp_path / "emb")
    embedder = SentenceEmbedder(tmp_path / "emb")
    vectors = embedder.embed_keys(["a red fox", "the Eiffel Tower"])
    assert vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(OSError, match="embedding model"):
        SentenceEmbedder(tmp_path / "missing-model")


def test_pick_pair_needs_the_gap_and_skips_missing():
    assert pick_pair([0.2, 0.9, float("nan"), 0.1, None, 0.5], 0.5) == (1, 3)
    assert pick_pair([0.2, 0.3, 0.25], 0.5) is None
    assert pick_pair([None, 0.9, float("nan")], 0.0) is None
    assert pick_pair([0.5, 0.5, 0.9, 0.9], 0.4) == (2, 0)  # ties: earliest


def test_parse_guide_accepts_fenced_json_and_rejects_empty_advice():
    raw = """```json
{"retrieval_key": {"trigger": " landmark ", "summary": "A tower blueprint"},
 "decision_guidance": {"tool_plan": ["- Search the height first", "", "Then fetch a photo"], "search_queries": "Use the landmark's name",}}
```"""
    g = parse_guide(raw)
    assert g.retrieval_key.trigger == "landmark"
    assert g.decision_guidance.tool_plan == ["Search the height first", "Then fetch a photo"]
    assert g.decision_guidance.search_queries == ["Use the landmark's name"]
    assert "Tool plan:\n- Search the height first" in g.render()
    with pytest.raises(GuideError, match="no bullet"):
        parse_guide('{"retrieval_key": {"trigger": "x", "summary": "y"}, "decision_guidance": {}}')
    with pytest.raises(GuideError, match="not valid JSON"):
        parse_guide("I cannot help with that")


class CountingEmbedder:
    """The tiny embedder, counting the keys it embeds."""

    def __init__(self, inner):
        self.inner, self.name, self.keys = inner, inner.name, 0

    def embed_keys(self, texts):
        self.keys += len(texts)
        return self.inner.embed_keys(texts)

    def embed_queries(self, texts):
        return self.inner.embed_queries(texts)


def _saved(tmp_path, embedder) -> ExperienceBuffer:
    chemist = guide("portrait in a laboratory", "A chemist in her laboratory, painted in oils")
    buffer = ExperienceBuffer(embedder, path=tmp_path / "buf")
    buffer.add([FOX, TOWER, chemist])
    buffer.save()
    return buffer


def test_a_truncated_vectors_file_means_one_re_embedding_not_a_crash(tmp_path, embedder):
    """Issue 23 item 6: before the fix ``np.load`` raised ``BadZipFile`` and training stopped."""
    _saved(tmp_path, embedder)
    vectors = tmp_path / "buf" / "embeddings.npz"
    vectors.write_bytes(vectors.read_bytes()[: vectors.stat().st_size // 2])
    counting = CountingEmbedder(embedder)
    again = ExperienceBuffer.load(tmp_path / "buf", counting)
    assert len(again) == 3 and counting.keys == 3  # every key embedded once
    for stored in again.guides:
        assert again.search([stored.key_text()])[0].guide.id == stored.id


def test_a_killed_save_leaves_no_temporary_files(tmp_path, embedder, monkeypatch):
    """Issue 23 item 6: temporary files of a killed save are removed on the next load; a save
    that fails removes its own."""
    buffer = _saved(tmp_path, embedder)
    folder = tmp_path / "buf"
    # what SIGKILL mid-save leaves: the temporaries of each of the three files
    for name in (".vectors-0123456789abcdef.npz", ".guides.jsonl.0123456789abcdef.tmp", ".meta.json.fedcba9876543210.tmp"):
        (folder / name).write_bytes(b"partial")
    (folder / "notes.txt").write_text("the user's own file stays")
    ExperienceBuffer.load(folder, embedder)
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.npz", "guides.jsonl", "meta.json", "notes.txt"]

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        buffer.save()
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.npz", "guides.jsonl", "meta.json", "notes.txt"]


def test_swapped_vector_rows_with_ids_intact_are_detected_and_re_embedded(tmp_path, embedder):
    """Issue 23 item 6: ids and key digests unchanged, two vector rows swapped. Before the fix the
    buffer reloaded FOX's guide under TOWER's vector and the reverse."""
    _saved(tmp_path, embedder)
    file = tmp_path / "buf" / "embeddings.npz"
    with np.load(file) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["vectors"] = arrays["vectors"][[1, 0, 2]]
    np.savez(file, **arrays)
    counting = CountingEmbedder(embedder)
    again = ExperienceBuffer.load(tmp_path / "buf", counting)
    assert counting.keys == 2  # only the two swapped rows
    for topic in (FOX, TOWER):
        hit = again.search([topic.key_text()])[0]
        assert hit.guide.id == topic.id and hit.score == pytest.approx(1.0, abs=1e-5)
