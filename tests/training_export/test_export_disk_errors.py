"""``export`` when it cannot write: an ``--images-dir`` that is a file, and a full disk. Each is
one line naming the path and the fix (exit 2), and a failed image write leaves no empty
temporary file in ``images/`` (it did, on every try).

The full disk is simulated: a tmpfs would need root to mount, so the file object our atomic
writer opens (``util.file_modes``, the only place that writes image bytes) raises ENOSPC on
its first write, as the kernel does on a full file system; only that module's ``os`` is
replaced.
"""

from __future__ import annotations

import errno
import os

from genevolve_graph.util import file_modes

from .test_commands import cli, trace  # noqa: F401 - fixtures


async def test_images_dir_naming_a_file_is_one_line(cli, trace, tmp_path):  # noqa: F811
    (tmp_path / "taken").write_text("not a folder")
    result = cli("export", "--checkpoint", trace, "--out", tmp_path / "sft.jsonl", "--images-dir", tmp_path / "taken")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --images-dir {tmp_path / 'taken'} is a file; pass a folder for the copied reference images"


class _FullDisk:
    """What ``os.fdopen`` returns on a full file system: writes fail with ENOSPC."""

    def __init__(self, handle: int, *args, **kwargs) -> None:
        self._stream = open(handle, *args, **kwargs)  # noqa: SIM115 - closed by __exit__

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._stream.close()


class _OsOnAFullDisk:
    """``os`` as ``util.file_modes`` sees it, on a full disk (everything else unchanged)."""

    fdopen = _FullDisk

    def __getattr__(self, name: str):
        return getattr(os, name)


async def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(cli, trace, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(file_modes, "os", _OsOnAFullDisk())
    images = tmp_path / "data" / "images"
    for attempt in range(2):
        result = cli("export", "--checkpoint", trace, "--out", tmp_path / "data" / "sft.jsonl")
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {images}/")
        assert "(No space left on device); free space or pass another --out / --images-dir" in lines[0]
        assert [p.name for p in images.iterdir()] == []  # no empty .copy- or .tmp files, try after try
