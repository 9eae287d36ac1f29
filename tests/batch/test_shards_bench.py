"""Several machines (--shard i/n, merge) and GenEvolve-Bench from a local copy of the data set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from genevolve_graph.batch.rows import BatchRow
from genevolve_graph.batch.shards import parse_shard, select_shard

from .conftest import bench_rows, policy_args, read_results, request_text, script_for, write_jsonl


def test_shards_partition_the_input_deterministically():
    rows = [BatchRow(key=str(i), position=i, data={"id": i}) for i in range(10)]
    parts = [select_shard(rows, *parse_shard(f"{i}/3")) for i in range(3)]
    assert [[r.key for r in p] for p in parts] == [["0", "3", "6", "9"], ["1", "4", "7"], ["2", "5", "8"]]
    assert parse_shard(" 1 / 4 ") == (1, 4)


def test_sharded_batch_then_merge_gives_every_row_once_in_input_order(cli, tmp_path, scripted_server):
    ids = [f"q{i}" for i in range(7)]
    server = scripted_server(script_for(ids, rounds=2))
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": request_text(i), "k": n} for n, i in enumerate(ids)])
    folders = []
    for index in range(3):
        folder = tmp_path / f"shard{index}"
        result = cli("batch", "--input", path, "--out", folder, "--shard", f"{index}/3", *policy_args(server))
        assert result.exit_code == 0, result.stderr
        folders.append(folder)
    assert [len(read_results(f / "results.jsonl")) for f in folders] == [3, 2, 2]
    wrong = cli("batch", "--input", path, "--out", folders[0], "--shard", "1/3", *policy_args(server))
    assert wrong.exit_code == 2 and "holds shard 0/3, not 1/3" in wrong.stderr
    merged = tmp_path / "merged"
    result = cli("merge", *folders[::-1], "--out", merged)
    assert result.exit_code == 0, result.stderr
    assert "7 rows" in result.stdout
    array = json.loads((merged / "results.json").read_text())
    assert [r["id"] for r in array] == ids and [r["id"] for r in read_results(merged / "results.jsonl")] == ids
    assert all(r["termination"] == "answer" for r in array)
    missing = cli("merge", folders[0], folders[2], "--out", tmp_path / "m2")
    assert missing.exit_code == 2 and "shard(s) 1/3 missing" in missing.stderr
    assert cli("merge", folders[0], folders[2], "--out", tmp_path / "m2", "--allow-partial").exit_code == 0
    assert len(read_results(tmp_path / "m2" / "results.jsonl")) == 5
    assert cli("merge", *folders, "--out", tmp_path / "m2").exit_code == 0  # an earlier merge may be replaced
    assert len(read_results(tmp_path / "m2" / "results.jsonl")) == 7
    into_run = cli("merge", folders[0], folders[2], "--out", folders[1], "--allow-partial")
    assert into_run.exit_code == 2 and "holds a run of its own" in into_run.stderr
    twice = cli("merge", folders[0], folders[0], folders[1], folders[2], "--out", tmp_path / "m3")
    assert twice.exit_code == 2 and "given twice" in twice.stderr
    copy = tmp_path / "copy-of-0"
    shutil.copytree(folders[0], copy)
    overlap = cli("merge", folders[0], copy, folders[1], folders[2], "--out", tmp_path / "m4")
    assert overlap.exit_code == 2 and "shard 0/3 is given twice" in overlap.stderr


def make_bench(root: Path, ids: list[str]) -> Path:
    bench = root / "GenEvolve-Bench"
    (bench / "images").mkdir(parents=True)
    for i in ids:
        Image.new("RGB", (32, 32), (200, 40, 40)).save(bench / "images" / f"{i}.png")
    write_jsonl(bench / "test.jsonl", bench_rows(ids))
    return bench


def test_bench_genevolve_runs_both_stages_into_one_folder(cli, tmp_path, scripted_server):
    ids = ["ka-001", "ka-002", "qa-003"]
    server = scripted_server(script_for(ids, rounds=4))
    make_bench(tmp_path / "data", ids)
    out = tmp_path / "bench-run"
    result = cli("bench", "genevolve", "--data", tmp_path / "data", "--out", out, "--renderer", "preview", *policy_args(server))
    assert result.exit_code == 0, result.stderr
    assert "holds 3 rows; the published GenEvolve-Bench has 594" in result.stderr
    assert "rollouts: 3/3 rows recorded (answer 3)" in result.stdout and "renders: 3/3 rows recorded (rendered 3)" in result.stdout
    stage1 = json.loads((out / "rollouts" / "results.json").read_text())
    stage2 = json.loads((out / "renders" / "results.json").read_text())
    assert [r["id"] for r in stage1] == ids == [r["id"] for r in stage2]
    for record in stage2:
        assert record["eval_type"] == "Knowledge-Anchored" and record["difficulty"] == "hard" and record["gt_image"] == f"images/{record['id']}.png"
        assert Path(record["gt_image_path"]).is_file() and Path(record["output_path"]).is_file()
        assert record["termination"] == "answer" and record["success"] and record["reference_images"]
    again = cli("bench", "genevolve", "--data", tmp_path / "data", "--out", out, *policy_args(server))
    assert again.exit_code == 0 and "this session: 0 rows" in again.stdout  # everything was recorded
    assert len(server.requests) == 12


def test_bench_without_the_data_set_is_a_clear_error(cli, tmp_path):
    result = cli("bench", "genevolve", "--data", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "no GenEvolve-Bench/test.jsonl under" in result.stderr and "--data" in result.stderr
