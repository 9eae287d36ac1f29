"""Refuse an output that would overwrite an input, before anything is written.

Every command that reads files and writes files (run, batch, render, merge, export,
import-sft, evaluate, evaluate-wise, report, train sft) names what it will write and what it
reads; :func:`check_outputs` compares them. An input that is a SQLite database brings its
``-wal``, ``-shm`` and ``-journal`` files along (:func:`sqlite_family`): writing one of them
corrupts the database as surely as writing the database itself. Two paths are the same file when ``os.stat``
says so (same device and inode: symlinks and hard links included) or, when one does not
exist yet, when they resolve to the same path. Opening an input for writing truncates it
before a single byte is read back, so this check has to come first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

Named = tuple[str, "str | os.PathLike[str] | None"]
"""``(label, path)``: the label is the option that named the path (``--out``), for messages."""


class OutputOverwritesInput(ValueError):
    """An output path is an input path (or another output) under another name."""


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser())).resolve(strict=False)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` name one file: by device and inode when both exist (so a
    symlink or a hard link to a file is that file), else by resolved path."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        sa, sb = os.stat(pa), os.stat(pb)
    except OSError:
        return _resolved(pa) == _resolved(pb)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def is_within(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """True when ``path`` is ``folder`` or lies under it (symlinks resolved)."""
    if same_file(path, folder):
        return True
    p, f = _resolved(Path(path)), _resolved(Path(folder))
    return f in p.parents


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_family(path: str | os.PathLike[str]) -> list[Path]:
    """A database file and the side files SQLite keeps beside it."""
    base = Path(path)
    return [base] + [base.with_name(base.name + suffix) for suffix in SQLITE_SIDE_FILES]


def _present(items: Iterable[Named]) -> list[tuple[str, Path]]:
    return [(label, Path(path)) for label, path in items if path is not None and str(path) != ""]


def _with_side_files(items: Iterable[Named]) -> list[tuple[str, Path]]:
    return [(label, member) for label, path in _present(items) for member in sqlite_family(path)]


def check_outputs(outputs: Iterable[Named], inputs: Iterable[Named]) -> None:
    """Raise :class:`OutputOverwritesInput` when an output is an input, or two outputs are one file."""
    outs, ins = _present(outputs), _with_side_files(inputs)
    for out_label, out in outs:
        for in_label, source in ins:
            if same_file(out, source):
                raise OutputOverwritesInput(
                    f"{out_label} {out} is the input {in_label} {source} (the same file); writing it would destroy the input. "
                    f"Choose another {out_label}"
                )
    for i, (label_a, a) in enumerate(outs):
        for label_b, b in outs[i + 1:]:
            if same_file(a, b):
                raise OutputOverwritesInput(f"{label_a} {a} and {label_b} {b} are the same file; give them different paths")


def check_replaced_folder(label: str, folder: str | os.PathLike[str], inputs: Iterable[Named]) -> None:
    """A folder a command deletes and writes again must hold none of the inputs."""
    for in_label, source in _present(inputs):
        if is_within(source, folder):
            raise OutputOverwritesInput(
                f"{label} {folder} would be replaced, and it holds the input {in_label} {source}; choose another {label}"
            )


__all__ = ["OutputOverwritesInput", "SQLITE_SIDE_FILES", "check_outputs", "sqlite_family", "check_replaced_folder", "is_within", "same_file"]
