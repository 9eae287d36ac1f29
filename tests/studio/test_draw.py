"""``genevolve-graph draw``: Mermaid offline, PNG through graphviz or a clear message."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from genevolve_graph.cli.app import app

runner = CliRunner()


def test_png_without_graphviz_is_a_clear_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pygraphviz", None)  # as on a machine without it: import fails
    result = runner.invoke(app, ["draw", "--format", "png", "--out", str(tmp_path / "graph.png")])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "needs graphviz and pygraphviz" in errors[0] and "apt-get install graphviz libgraphviz-dev" in errors[0]
    assert "no online renderer" in errors[0]
    assert not (tmp_path / "graph.png").exists()


def test_png_needs_an_output_file():
    result = runner.invoke(app, ["draw", "--format", "png"])
    assert result.exit_code == 2 and "--format png needs --out FILE.png" in result.stderr


def test_png_with_graphviz(tmp_path):
    pytest.importorskip("pygraphviz", reason="the PNG drawing needs graphviz: apt-get install graphviz libgraphviz-dev && pip install pygraphviz")
    out = tmp_path / "graph.png"
    result = runner.invoke(app, ["draw", "--format", "png", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5_000


def test_mermaid_to_a_file(tmp_path):
    out = tmp_path / "graph.mmd"
    result = runner.invoke(app, ["draw", "--out", str(out)])
    assert result.exit_code == 0 and result.stdout.strip() == str(out)
    text = out.read_text()
    assert "graph TD;" in text
    assert "planner -.-> tools" in text and "render --> __end__" in text
