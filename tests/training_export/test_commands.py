"""``genevolve-graph export`` and ``import-sft`` end to end: export then import round trip, the
TRL dataset on disk, listing by experiment on every saver, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import uuid

import pytest
import typer
from typer.testing import CliRunner

from genevolve_graph.persistence import open_checkpointer, open_checkpointer_sync
from genevolve_graph.agent.runner import run_with_saver
from genevolve_graph.training.export import export_threads, list_threads
from genevolve_graph.cli.export import register
from genevolve_graph.training.sft_data import load_sft

from ..scripts import PARIS, PARIS_SCRIPT, answer, tool
from .helpers import record

FOX = "a red fox in fresh snow"
FOX_SCRIPT = [tool("image_search", "Find a fox.", query="red fox", top_k=2), answer("A red fox from the first reference image in snow.", [("IMG_001", "fur colour")])]


@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
async def trace(tmp_path, scripted_server, make_ctx):
    server = scripted_server({PARIS: PARIS_SCRIPT, FOX: FOX_SCRIPT, "an owl": ["hmm"] * 3})
    url = f"sqlite:///{tmp_path / 'trace.sqlite'}"
    await record(url, make_ctx(server), [("paris", PARIS), ("fox", FOX)])
    await record(url, make_ctx(server, max_rounds=3), [("owl", "an owl")])
    return url


async def test_export_then_import_round_trip(cli, trace, tmp_path):
    out = tmp_path / "data" / "sft.jsonl"
    result = cli("export", "--checkpoint", trace, "--format", "sft", "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 of 3 threads exported; filtered: 1 termination=no_answer" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["meta"]["thread_id"] for r in rows] == ["paris", "fox"]
    assert all((out.parent / p).is_file() for r in rows for p in r["images"])
    imported = cli("import-sft", "--data", out.parent, "--out", tmp_path / "elsewhere" / "imported.jsonl")
    assert imported.exit_code == 0, imported.output
    assert "2 valid record(s), 0 skipped, from 1 file(s)" in imported.output
    loaded = load_sft(out.parent)
    assert [r.record.to_json() for r in loaded.records] == rows
    again = load_sft(tmp_path / "elsewhere" / "imported.jsonl")
    assert [r.record.messages for r in again.records] == [r.record.messages for r in loaded.records]
    assert again.problems == []


async def test_trl_export_writes_jsonl_and_a_dataset(cli, trace, tmp_path):
    from datasets import load_from_disk

    out = tmp_path / "trl.jsonl"
    result = cli("export", "--checkpoint", trace, "--format", "trl", "--out", out, "--any-termination", "--no-dedupe")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(set(r) == {"messages"} for r in rows)  # genevolve protocol: no tools column
    dataset = load_from_disk(str(tmp_path / "trl"))
    assert dataset.column_names == ["messages"] and len(dataset) == 3
    assert dataset[0]["messages"] == rows[0]["messages"]
    assert not (tmp_path / "images").exists()
    # train sft reads the saved dataset through the same validation: the owl never answered.
    loaded = load_sft(tmp_path / "trl")
    assert [r.where for r in loaded.records] == ["trl#0", "trl#1"]
    assert loaded.problems == [("trl#2", "the last assistant turn is not a parsable <answer> (the reply has neither a <tool_call> nor an <answer>)")]


async def test_errors_are_one_line_with_exit_2(cli, trace, tmp_path):
    cases = [
        (["--checkpoint", "memory"], "holds no recorded runs"),
        (["--checkpoint", f"sqlite:///{tmp_path / 'missing.sqlite'}"], "does not exist"),
        (["--checkpoint", "redis://x"], "invalid checkpoint URL"),
        (["--checkpoint", trace, "--format", "csv"], "unknown format 'csv'"),
        (["--checkpoint", trace, "--termination", "done"], "unknown termination 'done'"),
        (["--checkpoint", trace, "--min-overall", "0.5"], "--min-overall needs --eval"),
        (["--checkpoint", trace, "--eval", tmp_path / "nope.jsonl"], "evaluation file"),
        (["--checkpoint", trace, "--min-rounds", "5", "--max-rounds", "2"], "is above --max-rounds"),
    ]
    for args, message in cases:
        result = cli("export", "--out", tmp_path / "x.jsonl", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "missing.sqlite").exists()
    nothing = cli("export", "--checkpoint", trace, "--out", tmp_path / "x.jsonl", "--experiment", "nope")
    assert nothing.exit_code == 1 and "0 of 0 threads exported" in nothing.output
    bad = cli("import-sft", "--data", tmp_path / "nowhere")
    assert bad.exit_code == 2 and "does not exist" in bad.output


async def test_threads_listed_by_experiment_on_every_saver(checkpoint_url, scripted_server, make_ctx, tmp_path):
    server = scripted_server({FOX: FOX_SCRIPT})
    tag = f"exp-{uuid.uuid4().hex[:8]}"
    ids = [f"{tag}-{i}" for i in range(3)]
    async with open_checkpointer(checkpoint_url) as saver:
        for thread_id in ids:
            await run_with_saver(FOX, make_ctx(server, experiment=tag), saver, thread_id=thread_id)
        if checkpoint_url == "memory":
            assert list_threads(saver, experiment=tag) == ids
            assert len(list(export_threads(saver, experiment=tag))) == 1  # one prompt
    if checkpoint_url != "memory":
        with open_checkpointer_sync(checkpoint_url) as saver:
            assert list_threads(saver, experiment=tag) == ids
            records = list(export_threads(saver, experiment=tag, format="trl"))
            assert [r.meta["thread_id"] for r in records] == ids[:1]
