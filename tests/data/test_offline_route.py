"""``data build`` offline from the command line (issue 24, item 12): one command serves the
scripted endpoints and prints the two variables the bundled recipe reads; a build with them
runs every stage. Per-stage summaries count only infrastructure errors as failed: a quality
drop is an outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from .conftest import ROOT, cli


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_printed_variables_make_the_bundled_recipe_build_offline(tmp_path, embedder_dir, monkeypatch):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p), HF_HUB_OFFLINE="1")
    server = subprocess.Popen([sys.executable, "-m", "genevolve_graph.testing.scripted_data", "--embedder", str(embedder_dir)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        exports = {}
        deadline = time.monotonic() + 120
        while len(exports) < 2 and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                pytest.fail(f"the scripted endpoints exited: {server.stderr.read()[-2000:]}")
            name, _, value = line.strip().removeprefix("export ").partition("=")
            exports[name] = value
        assert set(exports) == {"GENEVOLVE_DATA_BASE_URL", "GENEVOLVE_DATA_EMBEDDER"}
        assert exports["GENEVOLVE_DATA_EMBEDDER"] == str(embedder_dir.resolve())
        for name, value in exports.items():
            monkeypatch.setenv(name, value)
        result = cli("data", "build", "--recipes", "bundled:small", "--out", tmp_path / "data", "--no-progress")
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "split: sft 3, rl 1, bench 2" in out
        filter_lines = out.split("== filter")[1].split("== render")[0]
        assert "(dropped 8, kept 7, infra_error 1)" in filter_lines and "16 rows" in filter_lines and ", 1 failed" in filter_lines
        visual = out.split("== visual-filter")[1]
        assert "(kept 3, dropped 1)" in visual and ", 0 failed" in visual
    finally:
        server.terminate()
        server.wait(20)
