"""One-line errors (exit 2) where there were tracebacks (issue 22, item 14): an output folder that
is a file, a read-only output folder, an unreachable PostgreSQL checkpoint, an unreachable
``--server``, a corrupt guide buffer. Each names the input and the fix, before any work.

A read-only folder cannot be made by ``chmod`` here (the tests may run as root, which writes
anyway), so the write probe's temporary file creation is made to fail with EROFS, as it does
on a read-only mount.
"""

from __future__ import annotations

import errno
import json
import os
import socket

import pytest
from typer.testing import CliRunner

from genevolve_graph.cli.app import _register_commands, app
from genevolve_graph.util import file_modes

_register_commands()


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, (result.stderr or "").strip().splitlines()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "a red fox"}) + "\n")
    return path


@pytest.mark.parametrize("command", [["run", "a red fox"], ["batch", "--input", "{rows}"], ["render", "--input", "{rows}"],
                                     ["data", "build", "--recipes", "bundled:small", "--stages", "requests"]])
def test_an_output_folder_that_is_a_file(tmp_path, rows, monkeypatch, command):
    monkeypatch.setenv("GENEVOLVE_DATA_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GENEVOLVE_DATA_EMBEDDER", str(tmp_path))
    taken = tmp_path / "taken"
    taken.write_text("a file")
    result, lines = invoke(*[a.format(rows=rows) for a in command], "--out", taken)
    assert result.exit_code == 2, result.output
    assert lines[-1] == f"error: --out {taken} is a file; pass a folder (it is created if missing)"
    assert taken.read_text() == "a file"


@pytest.mark.parametrize("command", [["batch", "--input", "{rows}"], ["data", "build", "--recipes", "bundled:small", "--stages", "requests"]])
def test_a_read_only_output_folder(tmp_path, rows, monkeypatch, command):
    monkeypatch.setenv("GENEVOLVE_DATA_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GENEVOLVE_DATA_EMBEDDER", str(tmp_path))
    folder = tmp_path / "run"
    folder.mkdir()

    def read_only(dir, prefix="tmp", suffix=""):  # noqa: A002 - mkstemp's own parameter name
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

    monkeypatch.setattr(file_modes, "mkstemp", read_only)
    result, lines = invoke(*[a.format(rows=rows) for a in command], "--out", folder)
    assert result.exit_code == 2, result.output
    assert lines[-1] == f"error: cannot write in {folder} (--out {folder}): Read-only file system; pass a folder you can write to"
    assert list(folder.iterdir()) == []


def test_an_unreachable_postgresql_checkpoint(tmp_path):
    url = f"postgresql://user:secret@127.0.0.1:{closed_port()}/genevolve"
    result, lines = invoke("run", "a red fox", "--out", tmp_path / "out", "--checkpoint", url)
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith("error: cannot reach the PostgreSQL checkpoint database postgresql://user:***@127.0.0.1:")
    assert lines[-1].endswith("; start the database or fix the URL") and "secret" not in result.output


@pytest.mark.parametrize("command", [["batch", "--input", "{rows}"], ["render", "--input", "{rows}"]])
def test_an_unreachable_server(tmp_path, rows, command):
    server = f"http://127.0.0.1:{closed_port()}"
    result, lines = invoke(*[a.format(rows=rows) for a in command], "--out", tmp_path / "out", "--server", server)
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith(f"error: cannot reach the LangGraph Server {server} (--server): ConnectError")
    assert lines[-1].endswith("start it (langgraph dev, or make studio) or fix the URL")


def test_a_corrupt_guide_buffer(tmp_path):
    buffer = tmp_path / "guides"
    buffer.mkdir()
    (buffer / "guides.jsonl").write_bytes(b'{"id": "g1", "retrieval_key"\n')
    result, lines = invoke("run", "a red fox", "--out", tmp_path / "out", "--guidance", "retrieve", "--guide-dir", buffer)
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith(f"error: {buffer / 'guides.jsonl'} line 1 is not a Decision Guide (")
    assert lines[-1].endswith("(--guide-dir); fix or delete that line, or pass another buffer")
    assert not (tmp_path / "out").exists()
