"""Unknown ``--option`` keys are an error naming the known keys; plugins declare theirs; ``run``
has ``--request-timeout``/``--max-retries`` (issue 24, item 10)."""

from __future__ import annotations

from importlib.metadata import EntryPoint

from typer.testing import CliRunner

from genevolve_graph.cli.app import _register_commands, app
from genevolve_graph.core.registry import GENERATORS

from tests.scripts import answer

_register_commands()
runner = CliRunner()


def swatch_factory(ctx):  # a plugin's factory; never built by these tests
    raise AssertionError("not built")


swatch_factory.options = {"swatch_hue": "The swatch's hue in degrees."}


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_an_option_no_backend_reads_is_refused_with_the_known_keys(tmp_path):
    result = runner.invoke(app, ["run", "a fox", "--out", str(tmp_path / "o"), "--policy", "rules", "--option", "request_timeout=3"])
    assert result.exit_code == 2
    [line] = errors(result)
    assert "--option request_timeout" in line and "use --request-timeout instead" in line
    assert "download_concurrency" in line and "num_inference_steps" in line and "chat_client" in line
    (tmp_path / "x.jsonl").write_text('{"id": "a", "question": "a fox"}\n')
    result = runner.invoke(app, ["batch", "--input", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "b"), "--policy", "rules",
                                 "--option", "downlaod_concurrency=4", "--no-progress"])
    assert result.exit_code == 2 and "--option downlaod_concurrency" in errors(result)[0]
    result = runner.invoke(app, ["render", "--input", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "r"), "--option", "steps=4"])
    assert result.exit_code == 2 and "--option steps" in errors(result)[0]


def test_known_options_still_run(tmp_path):
    result = runner.invoke(app, ["run", "a fox", "--out", str(tmp_path / "o"), "--policy", "rules", "--quiet",
                                 "--option", "download_concurrency=4", "--option", "search_cache=false"])
    assert result.exit_code == 0, result.output


def test_a_plugin_declares_its_option_keys(tmp_path, monkeypatch):
    entry = EntryPoint("swatch", f"{__name__}:swatch_factory", "genevolve_graph.generators")
    monkeypatch.setattr(GENERATORS, "_installed", {"swatch": entry})
    from genevolve_graph.cli.common import known_option_keys

    assert "swatch_hue" in known_option_keys(renderer="swatch")
    assert "swatch_hue" not in known_option_keys(renderer="preview")  # only the chosen backend's keys are added


def test_run_takes_request_timeout_and_max_retries(scripted_server, tmp_path):
    server = scripted_server({"fox": [answer("a fox")]}, latency=1.0)
    result = runner.invoke(app, ["run", "a fox", "--out", str(tmp_path / "o"), "--policy", "openai", "--base-url", server.base_url,
                                 "--model", "m", "--renderer", "none", "--quiet", "--request-timeout", "0.2", "--max-retries", "1"])
    assert result.exit_code == 1 and "timed out" in result.stderr
    assert len(server.requests) == 2  # the first attempt and one retry
