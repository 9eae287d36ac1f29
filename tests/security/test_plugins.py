"""Threat-model row "installed plugins": a broken package cannot take the command line down.

Plugins are installed as pip installs them (a ``*.dist-info`` with ``entry_points.txt``) in a
temporary folder on ``sys.path``: one calls ``sys.exit(0)`` on import, one raises. Choosing
either is an error naming the plugin, its package and what it did (exit 2 on the command
line, one line); the other backends keep working. Before, ``sys.exit(0)`` in a plugin made
``run`` exit 0 with no output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from genevolve_graph.core.registry import GENERATORS, SEARCH, PluginLoadError, refresh_all

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broken_site(tmp_path, monkeypatch) -> Path:
    site = tmp_path / "site"
    (site / "broken_plugins").mkdir(parents=True)
    (site / "broken_plugins" / "__init__.py").write_text("", encoding="utf-8")
    (site / "broken_plugins" / "exits.py").write_text("import sys\nsys.exit(0)\n", encoding="utf-8")
    (site / "broken_plugins" / "raises.py").write_text("raise RuntimeError('no GPU driver found')\n", encoding="utf-8")
    dist = site / "broken_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(
        "[genevolve_graph.generators]\nexits = broken_plugins.exits:from_context\n\n"
        "[genevolve_graph.search]\nraises = broken_plugins.raises:from_context\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    refresh_all()
    yield site
    refresh_all()


def test_a_plugin_that_exits_or_raises_on_import_is_reported_by_name(broken_site):
    with pytest.raises(PluginLoadError) as exited:
        GENERATORS.factory("exits")
    message = str(exited.value)
    assert message.startswith("renderer 'exits' (entry point in group 'genevolve_graph.generators' of package 'broken-plugins')")
    assert "SystemExit(0)" in message and "\n" not in message
    with pytest.raises(PluginLoadError, match=r"search backend 'raises' .* RuntimeError: no GPU driver found"):
        SEARCH.factory("raises")
    # the other backends keep working
    assert callable(GENERATORS.factory("preview")) and callable(SEARCH.factory("local"))


def test_the_agent_reports_the_broken_renderer_and_keeps_running(broken_site, tmp_path):
    from genevolve_graph import create_genevolve_agent

    out = create_genevolve_agent(renderer="exits", output_dir=str(tmp_path / "out")).invoke({"request": "a cat"})
    assert "renderer 'exits'" in out["render"].error and "SystemExit(0)" in out["render"].error


def _cli(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), HF_HUB_OFFLINE="1", LANGSMITH_TRACING="false",
               XDG_CACHE_HOME=str(cwd / "cache"))
    return subprocess.run([sys.executable, "-c", "from genevolve_graph.cli.app import main; main()", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_run_with_a_plugin_that_exits_fails_with_one_line_and_exit_2(broken_site, tmp_path):
    proc = _cli(["run", "a red fox", "--renderer", "exits", "--out", str(tmp_path / "run")], broken_site, tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: renderer 'exits' (entry point in group 'genevolve_graph.generators' of package 'broken-plugins')")
    assert "SystemExit(0)" in lines[-1] and lines[-1].endswith("(--renderer)")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "program.json").exists()
