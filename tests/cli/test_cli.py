"""The command line end to end: the offline run, a served policy, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from genevolve_graph.cli.app import app, main

from tests.scripts import PARIS, PARIS_SCRIPT

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_offline_run_writes_program_preview_and_trace(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "genevolve_graph.cli", "run", PARIS, "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "using the offline rule-based planner" in proc.stderr and "--policy openai" in proc.stderr
    assert "tool · image_search" in proc.stdout  # the trajectory is printed
    program = json.loads((out / "program.json").read_text())
    assert program["termination"] == "answer" and program["gen_prompt"]
    assert program["thread_id"] and program["rounds"] >= 2
    assert (out / "preview.png").stat().st_size > 5_000
    assert (out / "trace.sqlite").is_file()


def test_served_policy_through_the_command_line(scripted_server, tmp_path):
    server = scripted_server({PARIS: PARIS_SCRIPT})
    out = tmp_path / "served"
    result = invoke("run", PARIS, "--out", str(out), "--policy", "openai", "--base-url", server.base_url,
                    "--model", "genevolve-8b", "--api-key", "sk-secret-123", "--checkpoint", "memory",
                    "--thread-id", "cli-thread", "--renderer", "none", "-q")
    assert result.exit_code == 0, result.output
    program = json.loads((out / "program.json").read_text())
    assert program["thread_id"] == "cli-thread" and program["reference_images"][0]["img_id"] == "IMG_001"
    assert all(r.authorization for r in server.requests)
    assert "sk-secret-123" not in (out / "program.json").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "   "], "the prompt is empty"),
        (["run", "a fox", "--search", "bing"], "unknown search backend 'bing' (--search)"),
        (["run", "a fox", "--image-search", "pinterest"], "unknown image search backend 'pinterest'"),
        (["run", "a fox", "--renderer", "dalle"], "unknown renderer 'dalle' (--renderer)"),
        (["run", "a fox", "--policy", "magic"], "unknown policy 'magic'"),
        (["run", "a fox", "--protocol", "xml"], "unknown protocol 'xml'"),
        (["run", "a fox", "--corpus", "/nonexistent/corpus.jsonl"], "is not a readable file; pass --corpus"),
        (["run", "a fox", "--checkpoint", "mysql://db"], "invalid checkpoint URL 'mysql://db'"),
        (["run", "a fox", "--policy", "openai"], "needs an endpoint: pass --base-url"),
        (["run", "a fox", "--image-dir", "/nonexistent/images"], "does not exist; pass --image-dir"),
        (["draw", "--format", "svg"], "unknown format 'svg'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path):
    result = invoke(*args, *(["--out", str(tmp_path / "o")] if args[0] == "run" else []))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_bad_corpus_line_is_named(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"title": "a", "text": "b"}\nnot json\n')
    result = invoke("run", "a fox", "--corpus", str(corpus), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "line 2: not JSON" in result.stderr


def test_draw_prints_every_edge():
    result = invoke("draw")
    assert result.exit_code == 0
    text = result.stdout
    for edge in ["__start__ --> planner", "planner -.-> tools", "planner -.-> planner", "planner -.-> binder",
                 "tools --> planner", "binder --> emitter", "emitter -.-> render", "emitter -.-> __end__", "render --> __end__"]:
        assert edge in text, edge


def test_main_registers_command_modules_and_shows_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "run" in capsys.readouterr().out


def test_backend_flags_become_context_options(tmp_path):
    from genevolve_graph.cli.common import backend_options

    options = backend_options(show_images=True, searxng_url="http://127.0.0.1:8888", allow_host=["127.0.0.1:9000"],
                              image_download_dir=tmp_path, option=["download_concurrency=8", "label=plain text"])
    assert options == {"show_images": True, "searxng_url": "http://127.0.0.1:8888", "allow_hosts": ["127.0.0.1:9000"],
                       "image_download_dir": str(tmp_path.resolve()), "download_concurrency": 8, "label": "plain text"}
    result = invoke("run", "a fox", "--option", "novalue", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.stderr
