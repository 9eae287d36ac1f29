"""SHA-256 of a file, read in blocks (input files of a run, images a judge saw)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of the bytes of ``path``, read 1 MiB at a time."""
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


__all__ = ["file_sha256"]
