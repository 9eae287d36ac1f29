"""``render --server``: every program row a background run of the render-only graph
(``genevolve_render``) on ``langgraph dev`` started by the test (in memory), rendered by the
preview renderer (Pillow, no GPU). Stopped part way and resumed: each row recorded once, each
row's thread run once (nothing renders twice), the images on the server where the records say,
and a reference outside the server's roots refused for its row alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from genevolve_graph.util.paths import file_stem

from ..studio.dev_server import langgraph_dev
from .conftest import policy_args, read_results, script_for, write_jsonl
from .test_renders import reference
from .test_server import interrupt_part_way, server_env, server_folder
from .test_shards_bench import make_bench

pytest.importorskip("langgraph_api", reason="the server test needs the studio extra: pip install 'genevolve-graph[studio]'")
langgraph_sdk = pytest.importorskip("langgraph_sdk")

ROWS = 10
HOSTILE = "hostile"


def stage1_rows(tmp_path: Path) -> list[dict]:
    """Programs with two, one and no references, a row without a program (rendered from its
    request), and one whose reference names a file outside the server's roots that this
    machine does not hold (so it is sent by path, and the server must refuse it)."""
    rows = []
    for i in range(ROWS - 2):
        refs = [reference("IMG_001", "cat", "the fur"), reference("IMG_002", "teapot", "the spout")][: i % 3]
        rows.append({"id": f"p{i}", "question": f"request {i}", "termination": "answer", "gen_prompt": f"Program {i}: a cat by a teapot.",
                     "reference_images": refs, "category": "art"})
    rows.append({"id": "no/program", "question": "a robot in the rain", "termination": "no_answer", "gen_prompt": None, "reference_images": []})
    outside = str(tmp_path / "elsewhere" / "secret.png")  # outside the server's roots, and absent here
    rows.append({"id": HOSTILE, "question": "q", "termination": "answer", "gen_prompt": "The first reference image, again.",
                 "reference_images": [{"img_id": "IMG_001", "local_path": outside, "note": "n"}]})
    return rows


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_render_on_a_langgraph_server_stops_and_resumes_without_rendering_anything_twice(cli, tmp_path):
    rows = stage1_rows(tmp_path)
    ids = sorted(str(r["id"]) for r in rows)
    source = write_jsonl(tmp_path / "results.jsonl", rows)
    out = tmp_path / "renders"
    folder = server_folder(tmp_path)
    server_images = folder / "images"  # inside the server's renders folder
    env = dict(server_env(tmp_path, "http://127.0.0.1:9/v1"), GENEVOLVE_RENDERS_DIR=str(folder))
    with langgraph_dev(folder, tmp_path / "dev.log", env) as server:
        args = ["--input", str(source), "--out", str(out), "--server", server.url, "--server-output-dir", str(server_images),
                "--concurrency", "1", "--no-progress"]
        interrupt_part_way("render", args, out, env, ROWS)

        resumed = cli("render", *args)
        assert resumed.exit_code == 0, resumed.stderr
        assert f"renders: {ROWS}/{ROWS} rows recorded (rendered {ROWS - 1}, failed 1)" in resumed.stdout
        assert f"images: on the LangGraph Server {server.url}, in {server_images}/" in resumed.stdout
        records = {r["id"]: r for r in read_results(out / "results.jsonl")}
        assert sorted(records) == ids and len(read_results(out / "results.jsonl")) == ROWS  # each row once

        run_id = json.loads((out / "run.json").read_text())["run_id"]
        for key, record in records.items():
            assert record["render_server"] == server.url and record["render_thread"] and record["backend"] == "preview"
            if key == HOSTILE:
                continue
            assert record["success"] is True, record
            assert record["output_path"] == str(server_images / record["render_thread"] / f"{file_stem(key)}.png")
            with Image.open(record["output_path"]) as image:
                assert image.format == "PNG" and image.width == 1024
        assert records["p1"]["render_source"] == "program" and records["no/program"]["render_source"] == "prompt"
        assert records["p0"]["category"] == "art"  # stage-1 fields kept
        hostile = records[HOSTILE]
        assert hostile["success"] is False and hostile["output_path"] is None
        assert "local_path" in hostile["render_error"] and "is refused: caller paths must stay under" in hostile["render_error"]
        stored = sorted(p.name for p in (server_images / records["p2"]["render_thread"] / "references" / "p2").iterdir())
        assert stored == ["IMG_001.png", "IMG_002.png"]  # sent inline: this machine holds them, the server kept them

        client = langgraph_sdk.get_sync_client(url=server.url)
        threads = client.threads.search(metadata={"batch_run": run_id, "stage": "renders"}, limit=100)
        assert sorted(t["metadata"]["row_id"] for t in threads) == ids  # one thread per row, found by metadata
        assert {t["thread_id"] for t in threads} == {r["render_thread"] for r in records.values()}
        runs = {t["thread_id"]: client.runs.list(t["thread_id"]) for t in threads}
        assert all(len(r) == 1 and r[0]["status"] == "success" for r in runs.values()), runs  # nothing rendered twice
        assert all(t["metadata"]["batch_run"] == run_id for t in threads)  # the server keeps run_id for its own runs

        written = {key: Path(r["output_path"]).stat().st_mtime_ns for key, r in records.items() if r["success"]}
        again = cli("render", *args)  # nothing left: no new run, no image written again
        assert again.exit_code == 0, again.stderr
        assert all(len(client.runs.list(t["thread_id"])) == 1 for t in threads)
        assert written == {key: Path(records[key]["output_path"]).stat().st_mtime_ns for key in written}
        assert len(read_results(out / "results.jsonl")) == ROWS


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_on_a_langgraph_server_runs_both_stages_there(cli, tmp_path, scripted_server):
    """``bench genevolve --server``: stage 1 on the agent graph, stage 2 on the render graph,
    whose references (found by the server's image search) travel inline from this machine."""
    ids = ["b0", "b1", "b2"]
    policy = scripted_server(script_for(ids, rounds=4), latency=0.05)
    make_bench(tmp_path / "data", ids)
    out = tmp_path / "bench-run"
    folder = server_folder(tmp_path)
    env = dict(server_env(tmp_path, policy.base_url), GENEVOLVE_RENDERS_DIR=str(folder / "images"))
    with langgraph_dev(folder, tmp_path / "dev.log", env) as server:
        result = cli("bench", "genevolve", "--data", tmp_path / "data", "--out", out, "--server", server.url,
                     "--server-output-dir", folder / "images", "--renderer", "preview", *policy_args(policy))
        assert result.exit_code == 0, result.stderr
        assert "rollouts: 3/3 rows recorded (answer 3)" in result.stdout and "renders: 3/3 rows recorded (rendered 3)" in result.stdout
        run_id = json.loads((out / "renders" / "run.json").read_text())["run_id"]
        records = read_results(out / "renders" / "results.jsonl")
        for record in records:
            assert record["success"] and record["render_server"] == server.url and record["render_source"] == "program"
            assert record["output_path"] == str(folder / "images" / record["render_thread"] / f"{record['id']}.png")
            assert Path(record["output_path"]).is_file() and record["reference_images"][0]["img_id"] == "IMG_001"
        assert not (out / "renders" / "images").exists()  # the images are on the server
        client = langgraph_sdk.get_sync_client(url=server.url)
        assert len(client.threads.search(metadata={"batch_run": run_id, "stage": "renders"}, limit=100)) == 3


def test_server_output_dir_needs_a_server(cli, tmp_path):
    source = write_jsonl(tmp_path / "results.jsonl", [{"id": 1, "question": "q", "gen_prompt": "p"}])
    result = cli("render", "--input", source, "--out", tmp_path / "o", "--server-output-dir", "/srv/images")
    assert result.exit_code == 2 and "--server-output-dir names a folder on a LangGraph Server" in result.stderr
    result = cli("render", "--input", source, "--out", tmp_path / "o", "--server", "lg-server:8123")
    assert result.exit_code == 2 and "is not an http(s) URL of a LangGraph Server" in result.stderr
    assert not (tmp_path / "o").exists()


def test_the_render_stage_sends_held_references_inline_and_never_its_own_folder(tmp_path):
    """What ``render --server`` sends per row, without a server: references this machine holds
    travel inline (the server may not share this disk), others by path for the server to
    check; the server's image folder replaces this machine's; rows with nothing to render are
    recorded here, with no run."""
    from genevolve_graph.batch.renders import RenderStage
    from genevolve_graph.batch.rows import BatchRow
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.safety.imaging import data_uri_bytes

    ctx = AgentContext(renderer="preview", output_dir=str(tmp_path / "local-images"), seed=3)
    stage = RenderStage(ctx, None, tmp_path, "skip", run_id="renders-1", server_url="http://u:secret@127.0.0.1:9",
                        server_output_dir="/srv/images")
    held, absent = reference("IMG_001", "cat", "fur"), {"img_id": "IMG_002", "local_path": "/on/the/server/x.png", "note": "n"}
    row = BatchRow(key="k", position=0, data={"id": "k", "question": "q", "gen_prompt": "the first and second reference images",
                                               "reference_images": [held, absent]})
    sent = stage.remote_input(row)
    assert sent["row_id"] == "k" and sent["batch_run"] == "renders-1" and set(sent["reference_data"]) == {"IMG_001"}
    assert data_uri_bytes(sent["reference_data"]["IMG_001"]) == Path(held["local_path"]).read_bytes()  # small PNG: as it is
    assert [r["local_path"] for r in sent["program"]["reference_images"]] == [held["local_path"], "/on/the/server/x.png"]
    assert stage.thread_label(row) == "renders-1:k" and stage.remote_skip(row) is None
    context = stage.remote_context()
    assert context["output_dir"] == "/srv/images" and context["renderer"] == "preview" and context["seed"] == 3

    no_program = BatchRow(key="n", position=1, data={"id": "n", "question": "q", "termination": "no_answer", "gen_prompt": None})
    skipped = stage.remote_skip(no_program)
    assert skipped and skipped["success"] is False and "no program (termination: no_answer)" in skipped["render_error"]
    bad = BatchRow(key="b", position=2, data={"id": "b", "question": "q", "gen_prompt": 5})
    assert "bad program in the input" in stage.remote_skip(bad)["render_error"]

    record = stage.remote_record(row, "thread-1", {"render": {"success": True, "output_path": "/srv/images/thread-1/k.png",
                                                              "backend": "preview"}}, 1.5)
    assert record["output_path"] == "/srv/images/thread-1/k.png" and record["render_thread"] == "thread-1"
    assert record["render_server"] == "http://u:***@127.0.0.1:9" and record["render_seconds"] == 1.5
    assert record["render_source"] == "program"
    assert stage.remote_record(row, "t", {}, 0.1)["render_error"] == "the server's run ended without a render result"
    assert "/srv/images/<thread of each row>/" in stage.report_lines(None)[0]  # type: ignore[arg-type]
