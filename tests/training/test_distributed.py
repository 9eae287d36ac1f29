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


def test_two_processes_share_the_buffer_and_keep_forwards_in_step(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), str(tmp_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    except subprocess.TimeoutExpired:  # a deadlock between the processes shows up here
        pytest.fail("the two-process run did not finish: the processes are out of step")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 and r["steps"] == 2 for r in ranks)
    assert ranks[0]["guides"] == ranks[1]["guides"] and len(ranks[0]["guides"]) == 4  # two groups distilled per step
    assert ranks[0]["distiller_calls"] == 4 and ranks[1]["distiller_calls"] == 0  # only the main process distils
    # the fox group (rank 0) has a guide above the gate, the tower group (rank 1) has none
    assert ranks[0]["hit_rate"] == [0.5, 0.5] and ranks[0]["active_rows"] == [3.0, 3.0]
    assert ranks[0]["changed"] == ranks[1]["changed"] > 0
