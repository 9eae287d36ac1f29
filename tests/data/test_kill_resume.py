"""SIGKILL in the middle of a middle stage (the filter's audit), then resume: every item
recorded exactly once, no finished audit asked again, and the same funnel as an
uninterrupted build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from genevolve_graph.data.recipes import bundled_recipe
from genevolve_graph.testing.scripted_data import AUDITOR

from .conftest import ROOT, cli, models_asked, read_jsonl
from .test_pipeline import EXPECTED_HEADLINE


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_bytes().decode().split("\n") if l.strip() and l.endswith("}")]


def test_sigkill_during_the_filter_stage_then_resume(data_env, tmp_path):
    server = data_env()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(bundled_recipe().read_text().replace("  min_tool_calls: 2", "  min_tool_calls: 2\n  concurrency: 2"))
    out = tmp_path / "build"
    first = cli("data", "build", "--recipes", recipe, "--out", out, "--stages", "requests,trajectories", "--no-progress")
    assert first.exit_code == 0, first.stdout + first.stderr
    server.latency = 0.5
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "genevolve_graph.cli", "data", "build", "--recipes", str(recipe), "--out", str(out),
                             "--stages", "filter", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    journal = out / "filter" / "results.jsonl"
    deadline = time.monotonic() + 120
    while sum(1 for r in lines(journal) if r["filter"]["audit"]) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the filter stage did not record two audits in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = lines(journal)
    assert 2 <= len(before) < 16
    with open(journal, "ab") as stream:  # the worst case of a kill inside a write
        stream.write(b'{"id": "poster.none.subject_photo.text.medium.00", "filter_st')
    audited_before = {r["question"] for r in before if r["filter"]["audit"]}
    server.latency = 0.0
    resumed = cli("data", "build", "--recipes", recipe, "--out", out, "--stages", "filter", "--no-progress")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert "torn line" in resumed.stdout + resumed.stderr
    after = read_jsonl(journal)
    assert len(after) == 16 and len({r["id"] for r in after}) == 16
    assert [r for r in after if r["id"] in {b["id"] for b in before}] == before  # earlier records kept as they were
    asked = models_asked(server, AUDITOR)
    for question in audited_before:  # a recorded audit is never asked for again
        assert sum(1 for body in asked if body["messages"][1]["content"][0]["text"].startswith(f"Request:\n{question}\n")) == 1
    rest = cli("data", "build", "--recipes", recipe, "--out", out, "--stages", "render,visual-filter,split", "--no-progress")
    assert rest.exit_code == 0, rest.stdout + rest.stderr
    assert cli("data", "report", out).exit_code == 0
    assert json.loads((out / "report" / "funnel.json").read_text())["headline"] == EXPECTED_HEADLINE
