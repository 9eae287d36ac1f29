"""SDL across two processes (torchrun, gloo on the CPU): one buffer everywhere, the main process
distils, and a process with nothing to teach keeps step with one that has."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("dist_worker.py")


def _run(tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), str(tmp_path), mode]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    except subprocess.TimeoutExpired:  # a deadlock between the processes shows up here
        pytest.fail("the two-process run did not finish: the processes are out of step")


def test_two_processes_share_the_buffer_and_keep_forwards_in_step(tmp_path):
    proc = _run(tmp_path, "ok")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 and r["steps"] == 2 for r in ranks)
    assert ranks[0]["guides"] == ranks[1]["guides"] and len(ranks[0]["guides"]) == 4  # two groups distilled per step
    assert ranks[0]["distiller_calls"] == 4 and ranks[1]["distiller_calls"] == 0  # only the main process distils
    # the fox group (rank 0) has a guide above the gate, the tower group (rank 1) has none
    assert ranks[0]["hit_rate"] == [0.5, 0.5] and ranks[0]["active_rows"] == [3.0, 3.0]
    assert ranks[0]["changed"] == ranks[1]["changed"] > 0
    # rank 0 alone "pushes weights" for 1.5 s before its rollouts (as TRL does to a vLLM server);
    # rank 1 arrived at once but sampled only after the push ended (issue 13 item 4)
    for step in range(2):
        assert ranks[1]["generation_started"][step] < ranks[0]["push_done"][step] - 1.0
        assert ranks[1]["first_sample"][step] >= ranks[0]["push_done"][step]


def test_a_failure_on_the_main_process_during_distillation_stops_every_process_with_its_cause(tmp_path):
    """Issue 13 item 4: the main process cannot save the buffer (its folder lies under a file).
    Before the fix it raised while the other process waited forever in broadcast_object_list."""
    proc = _run(tmp_path, "distill-fails")
    assert proc.returncode != 0
    for rank in (0, 1):
        error = (tmp_path / f"rank-{rank}-error.txt").read_text()
        assert error.startswith("RuntimeError: guide distillation failed on the main process:"), error[:500]
        assert "not-a-folder" in error.splitlines()[0]  # the cause, named on every process
