"""Missing backend credentials fail loudly (issue 24, item 7).

Before any row: ``run``, ``batch``, ``bench genevolve`` and ``data build`` refuse a search
backend or renderer whose key is not in the environment (exit 2, one line naming the
variable). During a batch: a row whose every search call found the backend unavailable is
a failed row, counted, never "0 failed".
"""

from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner

from genevolve_graph.cli.app import _register_commands, app

_register_commands()  # batch, bench and data are registered by main(); the runner calls the app directly
runner = CliRunner()


@pytest.fixture
def no_keys(monkeypatch):
    for name in ("SERPER_API_KEY", "TAVILY_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(("flags", "variable"), [
    (["--search", "serper"], "SERPER_API_KEY"),
    (["--image-search", "tavily"], "TAVILY_API_KEY"),
    (["--renderer", "gemini"], "GOOGLE_API_KEY or GEMINI_API_KEY"),
])
def test_run_refuses_a_backend_without_its_key(no_keys, tmp_path, flags, variable):
    result = runner.invoke(app, ["run", "a fox", "--out", str(tmp_path / "out"), "--policy", "rules", *flags])
    assert result.exit_code == 2
    assert variable in error_line(result) and flags[0] in error_line(result)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_batch_and_bench_refuse_a_backend_without_its_key(no_keys, tmp_path):
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"id": "a", "question": "a fox"}) + "\n")
    result = runner.invoke(app, ["batch", "--input", str(rows), "--out", str(tmp_path / "run"), "--policy", "rules",
                                 "--search", "tavily", "--no-progress"])
    assert result.exit_code == 2 and "TAVILY_API_KEY" in error_line(result)
    (tmp_path / "bench" / "GenEvolve-Bench").mkdir(parents=True)
    (tmp_path / "bench" / "GenEvolve-Bench" / "test.jsonl").write_text(json.dumps({"id": "a", "question": "a fox"}) + "\n")
    result = runner.invoke(app, ["bench", "genevolve", "--data", str(tmp_path / "bench"), "--out", str(tmp_path / "b"),
                                 "--policy", "rules", "--renderer", "gemini", "--no-progress"])
    assert result.exit_code == 2 and "GOOGLE_API_KEY or GEMINI_API_KEY" in error_line(result)


def test_data_build_refuses_a_teacher_search_without_its_key(no_keys, tmp_path, monkeypatch):
    monkeypatch.setenv("GENEVOLVE_DATA_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GENEVOLVE_DATA_EMBEDDER", str(tmp_path / "embedder"))
    from genevolve_graph.data.recipes import bundled_recipe

    recipe = tmp_path / "recipe.yaml"
    text = bundled_recipe("small").read_text()
    assert text.index("teacher:") < text.index("  search: local")  # the teacher's backend
    recipe.write_text(text.replace("  search: local", "  search: serper", 1))
    result = runner.invoke(app, ["data", "build", "--recipes", str(recipe), "--out", str(tmp_path / "data"), "--no-progress"])
    assert result.exit_code == 2 and "SERPER_API_KEY" in error_line(result)


def test_a_batch_row_whose_every_search_was_unavailable_is_a_counted_failure(monkeypatch, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on: every call is "unavailable"
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    monkeypatch.setenv("SERPER_API_KEY", "k")
    monkeypatch.setenv("SERPER_BASE_URL", f"http://127.0.0.1:{dead}")
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "question": q}) + "\n" for i, q in
                            [("a", "A poster of the Eiffel Tower at dusk"), ("b", "A red fox in fresh snow")]))
    out = tmp_path / "run"
    result = runner.invoke(app, ["batch", "--input", str(rows), "--out", str(out), "--policy", "rules", "--search", "serper",
                                 "--image-search", "serper", "--no-progress", "--max-retries", "0"])
    assert result.exit_code == 0, result.output  # failed rows are counted; the stage itself finished
    assert "recorded (error 2)" in result.stdout and "2 failed" in result.stdout, result.stdout
    assert "every search backend call was unavailable" in result.stdout
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["termination"] for r in records} == {"error"}
    assert all("every search backend call was unavailable" in r["error"] for r in records)


def test_batch_prints_the_absolute_trace_url(tmp_path, monkeypatch):
    """Issue 24, item 9: ``trace: sqlite:///trace.sqlite`` named no file from the working directory."""
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"id": "a", "question": "A red fox in fresh snow"}) + "\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["batch", "--input", "in.jsonl", "--out", "run", "--policy", "rules", "--no-progress"])
    assert result.exit_code == 0, result.output
    trace = next(line for line in result.stdout.splitlines() if line.startswith("trace: "))
    assert trace.startswith(f"trace: sqlite:///{(tmp_path / 'run' / 'trace.sqlite').resolve()} "), trace
    assert json.loads((tmp_path / "run" / "run.json").read_text())["checkpoint"] == "sqlite:///trace.sqlite"  # run.json stays relative


def test_run_exits_non_zero_when_rendering_failed(tmp_path):
    """Issue 24, item 8: a run whose render failed exited 0."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "A red fox in fresh snow", "--out", str(out), "--policy", "rules", "--quiet",
                                 "--renderer", "service", "--service-url", f"http://127.0.0.1:{dead}",
                                 "--option", "service_retries=0", "--option", "service_timeout=5"])
    assert result.exit_code == 1, result.output
    assert "termination: answer" in result.stdout
    assert "error: rendering failed" in error_line(result)
    program = json.loads((out / "program.json").read_text())
    assert program["gen_prompt"] and program["render"]["success"] is False  # the program is kept
