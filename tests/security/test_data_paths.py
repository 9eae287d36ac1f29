"""Paths that arrive inside data: confined to the run's or the data set's own roots.

A record, a server's reply or a trace database is data, not a list of files to read: an SFT
record's image that leaves the data root (``..``, a symlink), a ``render --server`` reply
naming a host file as the row's image, a ``batch --server`` record naming a host file as a
reference, and a trace database naming an image outside the run's roots are refused, each
for its own row or thread, with the reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genevolve_graph import AgentContext
from genevolve_graph.batch.rows import BatchRow
from genevolve_graph.util.paths import file_stem
from genevolve_graph.core.protocol import format_answer, format_tool_call, wrap_tool_response
from genevolve_graph.tools.local_images import DEFAULT_IMAGE_DIR
from genevolve_graph.training.sft_data import load_sft, load_training_records

from ..scripts import answer, tool

CAT = DEFAULT_IMAGE_DIR / "cat.png"


def sft_record(images: list[str]) -> dict:
    block = "\n".join(["--- image search result for [cat] ---", "IMG_001: title: cat", "  url: https://img.example/c.png",
                       "  local_path: /data/c.png", "  page_url: ", "--- end of image search result ---"])
    return {"messages": [{"role": "user", "content": "a cat"},
                         {"role": "assistant", "content": format_tool_call("image_search", {"query": "cat"})},
                         {"role": "user", "content": wrap_tool_response(block)},
                         {"role": "assistant", "content": format_answer({"gen_prompt": "A cat as in the first reference image.",
                                                                          "reference_images": [{"img_id": "IMG_001", "note": "fur"}]})}],
            "images": images}


def test_sft_records_name_no_image_outside_their_data_root(tmp_path):
    root = tmp_path / "data"
    (root / "imgs").mkdir(parents=True)
    shutil.copy(CAT, root / "imgs" / "cat.png")
    host = tmp_path / "host" / "private.png"  # a real image of the host, outside the data set
    host.parent.mkdir()
    shutil.copy(CAT, host)
    (root / "imgs" / "link.png").symlink_to(host)
    lines = [sft_record(["imgs/cat.png"]), sft_record(["../host/private.png"]), sft_record(["imgs/../../host/private.png"]),
             sft_record(["imgs/link.png"])]
    (root / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    loaded = load_sft(root)
    assert [r.record.images for r in loaded.records] == [["imgs/cat.png"]]
    assert len(loaded.problems) == 3 and all("leaves the data root" in p for _, p in loaded.problems), loaded.problems
    records, _ = load_training_records(root)  # the train sft loader goes through the same check
    assert [r.images for r in records] == [[str((root / "imgs" / "cat.png").resolve())]]

    from genevolve_graph.cli.app import _register_commands, app

    _register_commands()
    out = tmp_path / "imported" / "records.jsonl"
    result = CliRunner().invoke(app, ["import-sft", "--data", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 valid record(s), 3 skipped" in result.output
    [written] = [json.loads(line) for line in out.read_text().splitlines()]
    copied = out.parent / written["images"][0]
    assert ".." not in written["images"][0] and copied.read_bytes() == CAT.read_bytes()
    assert load_sft(out).problems == []  # the imported data set is self-contained


def render_stage(server_output_dir: str = ""):
    from genevolve_graph.batch.renders import RenderStage

    return RenderStage(AgentContext(renderer="preview"), None, Path("/tmp/unused"), "prompt", run_id="r-1",
                       server_url="http://127.0.0.1:9", server_output_dir=server_output_dir)


@pytest.mark.parametrize("output_path", ["/etc/passwd", "/home/user/photos/private.png", "/srv/renders/other-thread/k.png",
                                         "/srv/renders/thread-1/../../x/k.png", "relative/thread-1/k.png", None])
def test_a_render_server_reply_must_name_the_row_s_own_image(output_path):
    stage = render_stage()
    row = BatchRow(key="k", position=0, data={"id": "k", "question": "q", "gen_prompt": "a cat"})
    record = stage.remote_record(row, "thread-1", {"render": {"success": True, "output_path": output_path, "backend": "preview"}}, 1.0)
    assert record["success"] is False and record["output_path"] is None
    assert "is not this row's image" in record["render_error"] or "without an output_path" in record["render_error"]
    fine = stage.remote_record(row, "thread-1", {"render": {"success": True, "output_path": "/srv/renders/thread-1/k.png",
                                                            "backend": "preview"}}, 1.0)
    assert fine["success"] is True and fine["output_path"] == "/srv/renders/thread-1/k.png"
    inside = render_stage("/srv/renders/mine")
    assert inside.remote_record(row, "thread-1", {"render": {"success": True, "output_path": "/srv/renders/thread-1/k.png"}}, 1.0)["success"] is False
    assert inside.remote_record(row, "thread-1", {"render": {"success": True, "output_path": f"/srv/renders/mine/thread-1/{file_stem('k')}.png"}},
                                1.0)["success"] is True


def test_a_batch_server_record_s_reference_is_never_read_here(tmp_path):
    """A stage-1 record made on a server (``server_thread``) names files on that server: a
    local ``render`` refuses the row, and ``render --server`` sends the path for the server to
    check under its own roots instead of reading and uploading this machine's file."""
    import asyncio

    from genevolve_graph.batch.renders import RenderStage
    from genevolve_graph.generators.preview import PreviewRenderer

    host = tmp_path / "private.png"
    shutil.copy(CAT, host)
    data = {"id": "k", "question": "q", "termination": "answer", "gen_prompt": "A cat as in the first reference image.",
            "reference_images": [{"img_id": "IMG_001", "local_path": str(host), "note": "n"}], "server_thread": True}
    row = BatchRow(key="k", position=0, data=data)
    local = RenderStage(AgentContext(renderer="preview"), PreviewRenderer(), tmp_path / "run", "prompt", run_id="r-1")
    record = asyncio.run(local.render_row(row))
    assert record["success"] is False and "found by a LangGraph Server run" in record["render_error"]
    assert not (tmp_path / "run" / "images").exists()
    remote = render_stage()
    sent = remote.remote_input(row)
    assert sent["reference_data"] == {} and sent["program"]["reference_images"][0]["local_path"] == str(host)
    # a record of this machine's own run still renders and still sends its files inline
    own = BatchRow(key="k", position=0, data={**data, "server_thread": False})
    assert set(remote.remote_input(own)["reference_data"]) == {"IMG_001"}
    assert asyncio.run(local.render_row(own))["success"] is True


async def test_export_reads_images_only_under_the_run_s_roots(scripted_server, tmp_path):
    from genevolve_graph.agent.runner import run_with_saver
    from genevolve_graph.persistence import open_checkpointer

    images = tmp_path / "host-photos"  # a folder outside the run's folder, the cache and the bundled images
    images.mkdir()
    for path in DEFAULT_IMAGE_DIR.iterdir():
        shutil.copy(path, images / path.name)
    request = "a red fox in fresh snow"
    server = scripted_server({request: [tool("image_search", "Find a fox.", query="red fox", top_k=1),
                                        answer("A red fox as in the first reference image.", [("IMG_001", "fur")])]})
    db = tmp_path / "run" / "trace.sqlite"
    db.parent.mkdir()
    ctx = AgentContext(policy="openai", base_url=server.base_url, model="m", renderer="none", image_dir=str(images),
                       output_dir=str(tmp_path / "renders"))
    async with open_checkpointer(f"sqlite:///{db}") as saver:
        result = await run_with_saver(request, ctx, saver, thread_id="t")
    assert result.termination == "answer", result.error

    from genevolve_graph.cli.app import _register_commands, app

    _register_commands()
    out = tmp_path / "export" / "sft.jsonl"
    refused = CliRunner().invoke(app, ["export", "--checkpoint", f"sqlite:///{db}", "--out", str(out)])
    assert refused.exit_code == 1 and "outside the export's image roots" in refused.output and "--image-root" in refused.output
    assert not list((tmp_path / "export" / "images").glob("*"))
    allowed = CliRunner().invoke(app, ["export", "--checkpoint", f"sqlite:///{db}", "--out", str(out), "--image-root", str(images)])
    assert allowed.exit_code == 0, allowed.output
    assert len(list((tmp_path / "export" / "images").glob("*"))) == 1
