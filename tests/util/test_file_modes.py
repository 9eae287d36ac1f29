"""Everything a run writes has one mode: 0666 under the umask (0644 under the usual 022),
not 0600 for files written through a temporary file and 0644 for the rest."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genevolve_graph.cli import app as cli
from genevolve_graph.util.file_modes import mkstemp

cli._register_commands()


def modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_run_batch_and_export_files_share_one_mode(umask, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(cli.app, ["run", "a red fox in snow", "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": "a", "prompt": "an owl at night"}) + "\n", encoding="utf-8")
    batch = tmp_path / "batch"
    result = runner.invoke(cli.app, ["batch", "--input", str(rows), "--out", str(batch), "--no-progress"])
    assert result.exit_code == 0, result.output
    renders = tmp_path / "renders"
    result = runner.invoke(cli.app, ["render", "--input", str(batch), "--out", str(renders), "--no-progress"])
    assert result.exit_code == 0, result.output
    export = tmp_path / "export"
    result = runner.invoke(cli.app, ["export", "--checkpoint", f"sqlite:///{run / 'trace.sqlite'}", "--out", str(export / "sft.jsonl")])
    assert result.exit_code == 0, result.output
    written = {f"{name}/{path}": mode for name, folder in (("run", run), ("batch", batch), ("renders", renders), ("export", export))
               for path, mode in modes(folder).items()}
    assert "run/program.json" in written and "run/preview.png" in written and "renders/results.json" in written
    assert any(path.startswith("export/images/") for path in written)
    expected = 0o666 & ~umask
    assert {path: oct(mode) for path, mode in written.items() if mode != expected} == {}


def test_mkstemp_respects_the_umask(umask, tmp_path):
    fd, path = mkstemp(tmp_path, prefix=".x-", suffix=".tmp")
    os.close(fd)
    assert Path(path).name.startswith(".x-") and path.endswith(".tmp")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
