"""``render --server``: every program row a background run of the render-only graph
(``genevolve_render``) on ``langgraph dev`` started by the test (in memory), rendered by the
preview renderer (Pillow, no GPU). Stopped part way and resumed: each row recorded once, each
row's thread run once (nothing renders twice), the images on the server where the records say,
and a reference outside the server's roots refused for its row alone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from genevolve_graph.batch.rows import file_stem

from ..studio.dev_server import langgraph_dev
from .conftest import read_results, write_jsonl
from .test_kill_resume import recorded, wait_for
from .test_renders import reference
from .test_server import ROOT, server_env, server_folder

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
    server_images = folder / "images"  # the server's working directory is one of its allowed roots
    env = server_env(tmp_path, "http://127.0.0.1:9/v1")
    with langgraph_dev(folder, tmp_path / "dev.log", env) as server:
        args = ["--input", str(source), "--out", str(out), "--server", server.url, "--server-output-dir", str(server_images),
                "--concurrency", "1", "--no-progress"]
        proc = subprocess.Popen([sys.executable, "-m", "genevolve_graph.cli", "render", *args, "--grace", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        wait_for(lambda: recorded(out) >= 2, proc, timeout=120)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert recorded(out) < ROWS and "resume with the same command" in stderr

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
            assert record["output_path"] == str(server_images / file_stem(run_id) / f"{file_stem(key)}.png")
            with Image.open(record["output_path"]) as image:
                assert image.format == "PNG" and image.width == 1024
        assert records["p1"]["render_source"] == "program" and records["no/program"]["render_source"] == "prompt"
        assert records["p0"]["category"] == "art"  # stage-1 fields kept
        hostile = records[HOSTILE]
        assert hostile["success"] is False and hostile["output_path"] is None
        assert "local_path" in hostile["render_error"] and "is refused: caller paths must stay under" in hostile["render_error"]
        stored = sorted(p.name for p in (server_images / file_stem(run_id) / "references" / "p2").iterdir())
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
