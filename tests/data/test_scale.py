"""``data build`` at scale (issue 25, item 6), as structure rather than timings: the
near-duplicate search is the greedy rule computed in blocks of matrix products (never an
all-pairs loop in Python), a finished stage's records stay in its journal (``StageRun``
does not hold them), and the next stage keeps the previous stage's rows as file offsets.
The figures are measured by ``benchmarks/data_scale.py``."""

from __future__ import annotations

import asyncio
import gc
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genevolve_graph.data import batch_adapter as engine
from genevolve_graph.data.dedup import near_duplicates

MARKER = "scale_marker_field"


def greedy_reference(vectors: np.ndarray, threshold: float) -> dict[int, tuple[int, float]]:
    """The rule as it was first written: each text against every kept earlier text, one by one."""
    kept: list[int] = []
    dropped: dict[int, tuple[int, float]] = {}
    for index in range(len(vectors)):
        if kept:
            sims = vectors[kept] @ vectors[index]
            best = int(np.argmax(sims))
            if float(sims[best]) >= threshold:
                dropped[index] = (kept[best], round(float(sims[best]), 4))
                continue
        kept.append(index)
    return dropped


class TableEmbedder:
    """Texts are row numbers of a fixed table of unit vectors; counts its ``encode`` calls."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors.astype(np.float32)
        self.calls: list[int] = []

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        self.calls.append(len(texts))
        return self.vectors[[int(t) for t in texts]]


def unit(rows: Any) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float64)
    return (array / np.linalg.norm(array, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    centres = rng.normal(size=(max(1, n // 4), dim))
    return unit(centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.3, size=(n, dim)))


def same(blocked: dict[int, tuple[int, float]], reference: dict[int, tuple[int, float]]) -> None:
    assert blocked.keys() == reference.keys()
    assert {i: j for i, (j, _) in blocked.items()} == {i: j for i, (j, _) in reference.items()}
    # matrix products and the one-by-one products may differ in the last bit of a float32
    assert all(abs(blocked[i][1] - reference[i][1]) <= 1.01e-4 for i in blocked)


@pytest.mark.parametrize("seed", range(6))
def test_the_blocked_search_equals_the_greedy_rule_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(200, 1500))
    vectors = clustered(rng, n)
    reference = greedy_reference(vectors, 0.9)
    assert 0 < len(reference) < n  # near-duplicates, chains of them, and kept texts
    texts = [str(i) for i in range(n)]
    for block, kept_chunk in ((1024, 2048), (int(rng.integers(2, 200)), int(rng.integers(1, 300))), (1, 1), (n, n)):
        same(near_duplicates(texts, TableEmbedder(vectors), 0.9, block=block, kept_chunk=kept_chunk), reference)


@pytest.mark.parametrize(("block", "kept_chunk"), [(1024, 2048), (1, 1), (2, 1), (3, 2)])
def test_chains_and_ties_follow_the_greedy_rule(block, kept_chunk):
    angle = math.radians(20)  # cos 20 degrees = 0.94: neighbours at 20 degrees are duplicates, at 40 degrees they are not
    a, b, c = ([math.cos(k * angle), math.sin(k * angle), 0.0, 0.0] for k in range(3))
    p = 0.95  # 5 and 6 are p^2 - q^2 = 0.805 apart (both kept); 7 is exactly p from each: a tie
    q = math.sqrt(1 - p * p)
    vectors = unit([
        a,                         # 0: kept
        b,                         # 1: duplicate of 0
        c,                         # 2: duplicate of 1 only, which was dropped: kept
        [1.0, 0.0, 1e-3, 0.0],     # 3: duplicate of 0 (not of 2)
        [math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0],  # 4: between 0 and 1: duplicate of 0
        [0.0, 0.0, p, q],          # 5: kept
        [0.0, 0.0, p, -q],         # 6: kept
        [0.0, 0.0, 1.0, 0.0],      # 7: as close to 5 as to 6: the earliest, 5
        [math.cos(2 * angle), math.sin(2 * angle), 1e-3, 0.0],  # 8: duplicate of 2, kept after the dropped 1
    ])
    reference = greedy_reference(vectors, 0.93)
    assert {i: j for i, (j, _) in reference.items()} == {1: 0, 3: 0, 4: 0, 7: 5, 8: 2}
    blocked = near_duplicates([str(i) for i in range(len(vectors))], TableEmbedder(vectors), 0.93, block=block, kept_chunk=kept_chunk)
    same(blocked, reference)


def test_the_search_embeds_and_compares_in_blocks_not_pairs(monkeypatch):
    """5,000 texts: ceil(5000 / block) embedding calls, and a number of argmax calls that
    grows with the blocks (one per block and kept chunk, one per text with a close earlier
    text of its own block), where the one-by-one rule made one per text."""
    calls = {"argmax": 0}
    original = np.argmax

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["argmax"] += 1
        return original(*args, **kwargs)

    rng = np.random.default_rng(7)
    vectors = unit(rng.normal(size=(5000, 64)))  # no near-duplicates: every text is kept
    embedder = TableEmbedder(vectors)
    monkeypatch.setattr(np, "argmax", counting)
    dropped = near_duplicates((str(i) for i in range(5000)), embedder, 0.9, block=1024, kept_chunk=2048)
    assert dropped == {}
    assert embedder.calls == [1024, 1024, 1024, 1024, 904]
    assert calls["argmax"] <= 12  # blocks x kept chunks: 0 + 1 + 1 + 2 + 2


def test_empty_input_asks_the_embedder_nothing():
    embedder = TableEmbedder(np.eye(2))
    assert near_duplicates([], embedder, 0.9) == {} and embedder.calls == []


def _live_marked_dicts() -> int:
    """Live dicts holding the marker field (its value is a list, so the collector tracks them)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is dict and MARKER in o)


def test_a_stage_run_keeps_no_record_in_memory(tmp_path):
    """StageRun.records read every record of the stage back into a list (per-item state that
    grew with the size of the build); now it reads them from the journal when iterated."""
    items = [engine.make_item(f"item-{i:03d}", i, {"question": f"request {i}"}) for i in range(300)]

    async def worker(item: engine.Item) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {**item.data, "work_status": "kept", "work_error": None, MARKER: ["x" * 200]}

    run = asyncio.run(engine.run_items(
        "scale-test", items, worker, out_dir=tmp_path / "stage", settings={}, concurrency=8, resume=None, progress=False,
        is_failure=lambda r: r.get("work_status") == "infra_error", outcome_field="work_status", error_field="work_error",
    ))
    del worker
    assert run.complete and len(run.records) == 300 and run.remaining == 0
    assert _live_marked_dicts() == 0
    # the records are all there, in input order, one at a time
    ids = [record["id"] for record in run.records]
    assert ids == [f"item-{i:03d}" for i in range(300)]
    assert run.records[5]["id"] == "item-005" and run.records[-1][MARKER] == ["x" * 200]
    assert [r["id"] for r in run.records[10:12]] == ["item-010", "item-011"]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_next_stage_keeps_the_previous_stages_rows_as_file_offsets(tmp_path):
    rows = [{"id": f"r{i}", "question": f"request {i}", "termination": "answer" if i % 3 else "no_answer", MARKER: ["y" * 300]}
            for i in range(200)]
    path = _write_jsonl(tmp_path / "results.jsonl", rows)
    answered = [(r["id"], i) for i, r in enumerate(rows) if r["termination"] == "answer"]
    first, last = json.dumps(rows[1]), json.dumps(rows[-1])
    del rows
    items = engine.read_items(path, option="--test", keep=lambda data: data["termination"] == "answer")
    assert _live_marked_dicts() == 0
    assert [(item.key, item.position) for item in items] == answered
    assert items[0].data == json.loads(first) and items[-1].data == json.loads(last)
    moved = engine.move_item(items[0], 0)
    assert moved.position == 0 and moved.data == engine.make_item(items[0].key, 0, json.loads(first)).data


@pytest.mark.parametrize("lines", [
    [{"id": "a", "question": "q"}, "{not json", {"id": "b", "question": "q"}],
    [{"id": "a", "question": "q"}, {"id": "a", "question": "again"}],
    [{"id": "a"}, {"id": "b", "question": "q"}],
    [{"id": ["a"], "question": "q"}],
    ["[1, 2]"],
    [{"question": "no id"}, {"id": 1, "question": "q"}],
])
def test_reading_a_stage_line_by_line_checks_rows_as_batch_input_does(tmp_path, lines):
    path = _write_jsonl(tmp_path / "results.jsonl", lines)
    try:
        expected = [(row.key, row.position, row.data) for row in engine.read_rows(path, option="--test")]
    except engine.InputError as exc:
        with pytest.raises(engine.InputError) as caught:
            engine.read_items(path, option="--test")
        assert str(caught.value) == str(exc)
        return
    assert [(item.key, item.position, item.data) for item in engine.read_items(path, option="--test")] == expected


def test_a_stage_input_that_changed_under_the_stage_is_an_error(tmp_path):
    path = _write_jsonl(tmp_path / "results.jsonl", [{"id": "a", "question": "q"}, {"id": "b", "question": "q"}])
    items = engine.read_items(path, option="--test")
    _write_jsonl(path, [{"id": "b", "question": "q"}, {"id": "a", "question": "q"}])
    with pytest.raises(engine.InputError, match="changed while this stage read it"):
        _ = items[0].data
