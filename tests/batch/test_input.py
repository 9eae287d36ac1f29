"""Batch input: JSONL and JSON arrays, ids, extra fields, and clear errors for bad rows."""

from __future__ import annotations

import json

import pytest

from genevolve_graph.batch.rows import InputError, read_rows
from genevolve_graph.util.paths import file_stem

from .conftest import error_lines, policy_args, write_jsonl


def test_jsonl_rows_keep_fields_and_get_index_ids(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps({"question": "a red fox", "category": "biology", "meta": {"skills": ["x"]}}) + "\n\n"
        + json.dumps({"id": "b7", "prompt": "a blue whale"}) + "\n"
        + json.dumps({"prompt": "a green frog", "difficulty": "hard"}),  # no trailing newline: still a row
        encoding="utf-8",
    )
    rows = read_rows(path)
    assert [r.key for r in rows] == ["0", "b7", "2"]
    assert [r.prompt for r in rows] == ["a red fox", "a blue whale", "a green frog"]
    assert rows[0].data == {"id": 0, "question": "a red fox", "category": "biology", "meta": {"skills": ["x"]}}
    assert rows[2].data["difficulty"] == "hard" and rows[2].position == 2


def test_json_array_input(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([{"id": 5, "question": "q5"}, {"prompt": "q1"}]), encoding="utf-8")
    rows = read_rows(path)
    assert [(r.key, r.prompt, r.data["id"]) for r in rows] == [("5", "q5", 5), ("1", "q1", 1)]


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"id": 1, "question": "ok"}\n{"id": 2, "question": "ok"}\n{"id": 3, "question": \n', "line 3: not JSON"),
        ('{"id": "a", "question": "ok"}\n{"id": "b", "category": "x"}\n', "line 2 (id 'b'): missing prompt"),
        ('{"id": "a", "question": "ok"}\n{"id": "c", "prompt": "   "}\n', "line 2 (id 'c'): missing prompt"),
        ('{"id": "a", "question": "ok"}\n{"id": "z", "question": "ok"}\n{"id": "a", "question": "again"}\n',
         "line 3: duplicate id 'a' (first at line 1)"),
        ('{"id": 1, "question": "ok"}\n{"id": "1", "question": "same id as text"}\n', "line 2: duplicate id '1' (first at line 1)"),
        ('{"id": 1, "question": "ok"}\n["not", "an", "object"]\n', "line 2: expected a JSON object"),
        ('{"id": null, "question": "ok"}\n', "'id' must be a non-empty string or an integer"),
        ('[{"id": 1, "question": "ok"},\n {"id": 2 "question": "x"}]', "line 2: not valid JSON"),
        ('[{"id": 1, "question": "ok"}, {"id": 1, "question": "x"}]', "item 2: duplicate id 1"),
        ("\n\n", "holds no rows"),
    ],
)
def test_bad_input_names_the_place(tmp_path, text, message):
    path = tmp_path / "in.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_rows(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_all_problems_are_counted(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": 1}, {"id": 2}, {"id": 3, "question": "fine"}, {"id": 3, "question": "dup"}])
    with pytest.raises(InputError, match=r"line 1 \(id 1\): missing prompt.*\(and 2 more problems in the file\)"):
        read_rows(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": 1, "question": "ok"}\nnot json at all\n', "line 2: not JSON"),
        ('{"id": 1, "question": "ok"}\n{"id": 2}\n', "line 2 (id 2): missing prompt"),
        ('{"id": 1, "question": "ok"}\n{"id": 1, "question": "b"}\n', "duplicate id 1"),
    ],
)
def test_command_line_rejects_bad_input_with_exit_2(cli, tmp_path, scripted_server, content, message):
    server = scripted_server({})
    path = tmp_path / "in.jsonl"
    path.write_text(content, encoding="utf-8")
    result = cli("batch", "--input", path, "--out", tmp_path / "out", *policy_args(server))
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]
    assert not server.requests and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "{missing}"], "does not exist; pass an existing JSONL or JSON file as --input"),
        (["--concurrency", "0"], "--concurrency 0 is too small"),
        (["--max-samples", "0"], "--max-samples 0 is too small"),
        (["--shard", "3/3"], "--shard 3/3: the index must be in 0..2"),
        (["--shard", "half"], "is not of the form i/n"),
        (["--checkpoint", "mysql://x"], "invalid checkpoint URL 'mysql://x'"),
        (["--policy", "openai"], "needs an endpoint"),
        (["--search", "bing"], "unknown search backend 'bing'"),
        (["--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "cannot reach the policy endpoint http://127.0.0.1:9/v1"),
    ],
)
def test_bad_options_exit_2(cli, tmp_path, args, message):
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "question": "a fox"}])
    args = [a.replace("{missing}", str(tmp_path / "nope.jsonl")) for a in args]
    base = [] if "--input" in args else ["--input", str(path)]
    result = cli("batch", *base, "--out", tmp_path / "out", "--no-progress", *args)
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_file_names_for_ids_are_safe_and_distinct():
    assert file_stem("row-12_a.b") == "row-12_a.b"
    names = {file_stem(k) for k in ["a/b", "a_b", "a b", "a:b", "../x", "ä"]}
    assert len(names) == 6 and all("/" not in n and not n.startswith(".") for n in names)
