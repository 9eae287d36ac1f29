"""Reading and validating SFT records (the ``import-sft`` layout), on a fixture with bad records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from genevolve_graph.core.protocol import format_answer, format_tool_call, wrap_tool_response
from genevolve_graph.training.sft_data import SFTDataError, SFTRecord, load_sft, rebase_images, record_problems


def image_block(query: str, ids: list[str]) -> str:
    lines = [f"--- image search result for [{query}] ---"]
    for img_id in ids:
        lines += [f"{img_id}: title: {query} {img_id}", "  url: https://img.example/x.png", f"  local_path: /data/{img_id}.png", "  page_url: "]
    lines.append("--- end of image search result ---")
    return "\n".join(lines)


def good(ids=("IMG_001", "IMG_002"), cite=("IMG_001",), images=("imgs/a.png", "imgs/b.png")) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You plan images."},
            {"role": "user", "content": "a red fox"},
            {"role": "assistant", "content": "<think>look</think>\n" + format_tool_call("image_search", {"query": "red fox"})},
            {"role": "user", "content": wrap_tool_response(image_block("red fox", list(ids)))},
            {"role": "assistant", "content": "<think>ok</think>\n" + format_answer({"gen_prompt": "A red fox as in the first reference image.", "reference_images": [{"img_id": i, "note": "fur"} for i in cite]})},
        ],
        "images": list(images),
    }


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "GenEvolve-Data-SFT"
    (root / "imgs").mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (4, 4), (200, 10, 10)).save(root / "imgs" / f"{name}.png")
    (root / "imgs" / "a.json").write_text(json.dumps({"title": "a caption sidecar"}))
    tool_last = good()
    tool_last["messages"] = tool_last["messages"][:3]
    lines = [
        json.dumps(good()),
        "{not json",
        json.dumps({"images": []}),
        json.dumps({"messages": [{"role": "narrator", "content": "x"}]}),
        json.dumps(tool_last),
        json.dumps(good(cite=("IMG_001", "IMG_009"))),
        json.dumps(good(images=("imgs/a.png", "imgs/missing.png"))),
        json.dumps(good(images=("/abs/a.png",))),
        "",
        json.dumps({**good(), "messages": good()["messages"][:-1] + [{"role": "assistant", "content": "<answer>{gen_prompt: oops</answer>"}]}),
        json.dumps({**good(), "messages": good()["messages"][:4]}),
    ]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "more").mkdir()
    (root / "more" / "part.json").write_text(json.dumps([good(images=()), {"messages": "not a list"}]))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([good(ids=("IMG_001",), images=("imgs/b.png",))]), root / "more" / "part.parquet")
    return root


def test_every_record_is_validated_and_bad_ones_are_reported(data_root):
    result = load_sft(data_root)
    assert [r.where for r in result.records] == ["more/part.json#0", "more/part.parquet#0", "train.jsonl:1"]
    problems = dict(result.problems)
    assert len(result.problems) == len(problems) == 10
    assert problems["train.jsonl:2"].startswith("not valid JSON")
    assert problems["train.jsonl:3"].startswith("messages: Field required")
    assert problems["train.jsonl:4"].startswith("messages.0.role")
    assert problems["train.jsonl:5"] == "the last assistant turn is not a parsable <answer> (it holds a tool call)"
    assert problems["train.jsonl:11"] == "the trajectory does not end in an assistant turn (last role: user)"
    assert problems["train.jsonl:6"] == "the answer cites IMG_009, which no image_search returned"
    assert problems["train.jsonl:7"].startswith("image imgs/missing.png does not exist under")
    assert problems["train.jsonl:8"] == "image path '/abs/a.png' must be relative to the data root"
    assert "not a parsable <answer>" in problems["train.jsonl:10"]
    assert problems["more/part.json#1"].startswith("messages: Input should be a valid list")
    assert result.ignored_files == ["imgs/a.json"]
    assert result.total == 13


def test_single_file_and_bad_paths(data_root, tmp_path):
    result = load_sft(data_root / "more" / "part.json")
    assert result.root == data_root / "more" and len(result.records) == 1
    with pytest.raises(SFTDataError, match="does not exist"):
        load_sft(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SFTDataError, match="no record files"):
        load_sft(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SFTDataError, match="not a record file"):
        load_sft(tmp_path / "notes.txt")


def test_records_round_trip_and_rebase(data_root, tmp_path):
    record = SFTRecord.model_validate(good())
    assert record.to_json() == good()  # a text-protocol turn is exactly {"role", "content"}
    assert record_problems(record, data_root) == []
    moved = rebase_images(record, data_root, tmp_path / "elsewhere")
    assert all((tmp_path / "elsewhere" / p).resolve().is_file() for p in moved.images)
    # A native answer with bare JSON counts as an answer too.
    native = SFTRecord.model_validate({"messages": [{"role": "user", "content": "fox"}, {"role": "assistant", "content": '{"gen_prompt": "a fox"}'}]})
    assert record_problems(native, None) == []


def test_import_sft_command_reports_and_writes(data_root, tmp_path):
    import typer
    from typer.testing import CliRunner

    from genevolve_graph.cli.export import register

    app = typer.Typer()
    register(app)
    out, report = tmp_path / "clean" / "records.jsonl", tmp_path / "problems.jsonl"
    result = CliRunner().invoke(app, ["import-sft", "--data", str(data_root), "--out", str(out), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "skipped train.jsonl:6: the answer cites IMG_009, which no image_search returned" in result.output
    assert "3 valid record(s), 10 skipped, from 3 file(s)" in result.output and "(1 JSON file(s) without records ignored)" in result.output
    assert len(out.read_text().splitlines()) == 3 and len(report.read_text().splitlines()) == 10
    assert load_sft(out).problems == []  # image paths were rebased to the output's folder
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.jsonl").write_text('{"messages": []}\n')
    failed = CliRunner().invoke(app, ["import-sft", "--data", str(only_bad)])
    assert failed.exit_code == 1 and "0 valid record(s), 1 skipped" in failed.output
