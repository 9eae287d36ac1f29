"""``run`` shows progress as it happens, from the graph's custom events, on a terminal only.

The command runs for real in a subprocess whose stderr is a pseudo-terminal (as in a user's
shell) and whose stdout is a pipe (as when a script parses it)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from genevolve_graph import AgentContext
from genevolve_graph.cli.live import RunProgress, wants_progress
from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.agent.runner import run_with_saver

from tests.scripts import PARIS

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUMMARY = re.compile(r"^termination: answer  rounds: \d+  tool calls: \d+$", re.M)


def run_on_a_terminal(*args: str) -> tuple[str, str, int]:
    """Run the CLI with stderr on a pty; returns (stderr as seen, stdout, exit code)."""
    pty = pytest.importorskip("pty", reason="pseudo-terminals need a POSIX system")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "genevolve_graph.cli", "run", *args], stdout=subprocess.PIPE,
                            stderr=slave, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read().decode()
    code = proc.wait(timeout=120)
    os.close(master)
    return ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "\n"), stdout, code


def test_progress_on_a_terminal_and_stdout_unchanged(tmp_path):
    err, out, code = run_on_a_terminal(PARIS, "--out", str(tmp_path / "run"))
    assert code == 0, err
    # rounds, tool calls, images found and rendering, each as it happened
    assert "round 1: the policy calls query_knowledge" in err
    assert re.search(r"→ image_search\('Eiffel Tower'\)", err) and re.search(r"image IMG_001: .*Eiffel", err)
    assert re.search(r"← image_search: [1-9]\d* images? found", err)
    assert "rendering with preview" in err and f"rendered {tmp_path / 'run' / 'preview.png'}" in err
    # stdout: the trajectory and the summary lines, exactly as without progress
    assert SUMMARY.search(out) and "program: " in out and "trace: sqlite:///" in out
    assert "round 1:" not in out and "→" not in out


def test_quiet_and_not_a_terminal_print_no_progress(tmp_path):
    err, out, code = run_on_a_terminal(PARIS, "--out", str(tmp_path / "q"), "--quiet")
    assert code == 0 and "round 1:" not in err and "rendering with" not in err
    assert SUMMARY.search(out) and "tool · " not in out
    proc = subprocess.run([sys.executable, "-m", "genevolve_graph.cli", "run", PARIS, "--out", str(tmp_path / "pipe")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "round 1:" not in proc.stderr and "rendering with" not in proc.stderr
    assert SUMMARY.search(proc.stdout)
    assert not wants_progress(False, io.StringIO()) and not wants_progress(True, io.StringIO())


async def test_progress_lines_follow_the_real_events(tmp_path):
    buffer = io.StringIO()
    progress = RunProgress(Console(file=buffer, width=200, color_system=None), spinner=False)
    events: list[dict] = []

    def seen(event: dict) -> None:
        events.append(event)
        progress.handle(event)

    ctx = AgentContext(policy="rules", renderer="preview", output_dir=str(tmp_path), options={"output_name": "p.png"})
    async with open_checkpointer("memory") as saver:
        result = await run_with_saver(PARIS, ctx, saver, thread_id="live", on_event=seen)
    text = buffer.getvalue()
    assert result.termination == "answer"
    tool_runs = sum(e["event"] == "tool_done" for e in events)
    images = sum(e["event"] == "image_ready" for e in events)
    assert tool_runs == result.tool_calls and images > 0
    assert text.count("  → ") == tool_runs and text.count("  ← ") == tool_runs
    assert f"round {result.rounds}: the policy answers" in text
    assert progress.summary() == f"{result.rounds} rounds, {result.tool_calls} tool calls, {images} images found"
