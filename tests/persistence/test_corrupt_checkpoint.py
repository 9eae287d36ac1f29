"""A ``sqlite:///`` checkpoint that names a damaged file (random bytes, another kind of file,
a copy cut short) gives one line naming the file and the fix, exit code 2, through ``run``,
``batch`` and ``export``; the file's bytes stay as they were and nothing is written beside it."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genevolve_graph.cli import app as cli
from genevolve_graph.persistence import CheckpointFileError, check_sqlite_file, open_checkpointer, open_checkpointer_sync

cli._register_commands()
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(cli.app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sound_trace(tmp_path_factory) -> Path:
    """A real trace database written by an offline run."""
    out = tmp_path_factory.mktemp("sound") / "run"
    result = invoke("run", "a red fox in snow", "--out", out, "--renderer", "none", "-q")
    assert result.exit_code == 0, result.output
    trace = out / "trace.sqlite"
    assert not Path(str(trace) + "-wal").exists()  # the last connection folded the WAL in
    return trace


def damaged(kind: str, sound: Path, folder: Path) -> Path:
    target = folder / f"{kind}.sqlite"
    data = sound.read_bytes()
    if kind == "random-bytes":
        target.write_bytes(random.Random(0).randbytes(5000))
    elif kind == "a-jsonl-file":
        target.write_text('{"prompt": "a fox"}\n' * 50, encoding="utf-8")
    elif kind == "truncated":
        target.write_bytes(data[: len(data) // 2 + 123])
    elif kind == "scrambled-schema":  # a sound header, then garbage where the schema page was
        target.write_bytes(data[:100] + random.Random(1).randbytes(len(data) - 100))
    return target


KINDS = ["random-bytes", "a-jsonl-file", "truncated", "scrambled-schema"]


def assert_refused(result, target: Path, before: bytes) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert str(target) in errors[0] and "move this file away" in errors[0]
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(target.name)) == [target.name]


@pytest.mark.parametrize("kind", KINDS)
def test_run_refuses_a_damaged_checkpoint(kind, sound_trace, tmp_path):
    target = damaged(kind, sound_trace, tmp_path)
    before = target.read_bytes()
    out = tmp_path / "out"
    result = invoke("run", "a fox", "--out", out, "--renderer", "none", "-q", "--checkpoint", f"sqlite:///{target}")
    assert_refused(result, target, before)
    assert not (out / "program.json").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_export_refuses_a_damaged_checkpoint(kind, sound_trace, tmp_path):
    target = damaged(kind, sound_trace, tmp_path)
    before = target.read_bytes()
    out = tmp_path / "export" / "sft.jsonl"
    result = invoke("export", "--checkpoint", f"sqlite:///{target}", "--out", out)
    assert_refused(result, target, before)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["random-bytes", "truncated"])
def test_batch_refuses_a_damaged_checkpoint(kind, sound_trace, tmp_path):
    target = damaged(kind, sound_trace, tmp_path)
    before = target.read_bytes()
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": "a", "prompt": "a fox"}) + "\n", encoding="utf-8")
    out = tmp_path / "batch"
    result = invoke("batch", "--input", rows, "--out", out, "--checkpoint", f"sqlite:///{target}", "--no-progress")
    assert_refused(result, target, before)
    assert not out.exists()


def test_batch_resume_refuses_its_own_damaged_trace(sound_trace, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": "a", "prompt": "a fox"}) + "\n", encoding="utf-8")
    out = tmp_path / "batch"
    first = invoke("batch", "--input", rows, "--out", out, "--no-progress")
    assert first.exit_code == 0, first.output
    target = out / "trace.sqlite"
    for extra in out.glob("trace.sqlite-*"):
        extra.unlink()
    target.write_bytes(random.Random(2).randbytes(4096))
    before = target.read_bytes()
    result = invoke("batch", "--input", rows, "--out", out, "--no-progress", "--retry-failed")
    assert_refused(result, target, before)


async def test_the_library_openers_refuse_too(sound_trace, tmp_path):
    target = damaged("random-bytes", sound_trace, tmp_path)
    with pytest.raises(CheckpointFileError, match="is not a SQLite database"):
        async with open_checkpointer(f"sqlite:///{target}"):
            pass
    with pytest.raises(CheckpointFileError, match="is not a SQLite database"):
        with open_checkpointer_sync(f"sqlite:///{target}"):
            pass


def test_sound_missing_and_empty_files_pass(sound_trace, tmp_path):
    check_sqlite_file(sound_trace)
    check_sqlite_file(tmp_path / "missing.sqlite")
    (tmp_path / "empty.sqlite").write_bytes(b"")
    check_sqlite_file(tmp_path / "empty.sqlite")
    copy = tmp_path / "copy.sqlite"
    shutil.copy(sound_trace, copy)
    with open_checkpointer_sync(f"sqlite:///{copy}") as saver:
        assert list(saver.list(None))


def test_a_database_in_use_with_a_pending_wal_passes(tmp_path):
    """Another process writing the trace (batch workers) leaves a WAL: the check reads through it."""
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    with open_checkpointer_sync(url) as saver:
        saver.conn.execute("PRAGMA wal_autocheckpoint=0")
        saver.conn.execute("CREATE TABLE extra (x)")
        saver.conn.commit()
        assert Path(str(tmp_path / "live.sqlite") + "-wal").stat().st_size > 0
        check_sqlite_file(tmp_path / "live.sqlite")
