"""Temporary files for atomic writes, with the mode of every other file a run writes.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask, so anything written
through it and renamed into place (program.json, images, run.json, the download cache) ended
up 0600 while files opened normally were 0644: one run, two modes. :func:`mkstemp` creates
the temporary file with 0666 and lets the umask decide, like ``open(path, "w")`` does (0644
under the usual umask 022), so every file a run writes has the same mode.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Iterable

FILE_MODE = 0o666
"""Requested mode of new files; the process umask is applied by the OS."""


def mkstemp(dir: str | os.PathLike[str], prefix: str = "tmp", suffix: str = "") -> tuple[int, str]:
    """``(fd, path)`` of a new, exclusively created file in ``dir`` (as ``tempfile.mkstemp``),
    with mode ``FILE_MODE`` under the umask."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(os.fspath(dir), f"{prefix}{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(path, flags, FILE_MODE), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {dir}")


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """``data`` to ``path`` through a temporary file in the same folder and a rename, so that
    readers see the old file or the new one, never half of one (``fsync``: also flushed to
    disk before the rename). The temporary file goes if anything fails."""
    write_chunks_atomic(path, (data,), fsync=fsync)


def write_chunks_atomic(path: Path, chunks: Iterable[bytes], *, fsync: bool = False) -> None:
    """:func:`write_bytes_atomic` of the concatenated ``chunks``, written as they come: a
    file of 10^5 lines is never one string in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            for chunk in chunks:
                stream.write(chunk)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a failed write names no file: name the one being written
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_file(staging: Path, final: Path, *, replace_regular: bool = False) -> None:
    """Give the finished file ``staging`` its name ``final`` without ever replacing another
    file: ``os.link`` creates the name exclusively. Where a file already has that name, it is
    replaced only with ``replace_regular`` and only when it is a regular file (never a
    symlink, a folder or a device); otherwise ``FileExistsError``. ``staging`` is gone after."""
    try:
        os.link(staging, final)
    except FileExistsError:
        if not (replace_regular and stat.S_ISREG(os.lstat(final).st_mode)):
            raise
        os.replace(staging, final)
        return
    os.unlink(staging)


__all__ = ["FILE_MODE", "mkstemp", "publish_file", "write_bytes_atomic", "write_chunks_atomic"]
