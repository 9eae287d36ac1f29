"""Imports of libraries that warn about progress bars nobody asked for.

tqdm's notebook front-end warns "IProgress not found" (a ``TqdmWarning``) the first time
``tqdm.auto``/``tqdm.autonotebook`` is imported in a Jupyter kernel without ipywidgets.
bm25s, sentence-transformers and transformers import it at module level, although every call
of ours turns their progress bars off, so the warning only clutters a notebook's output.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_progress_imports() -> Iterator[None]:
    """Import inside this block to drop that one warning (nothing else is filtered)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        yield


__all__ = ["quiet_progress_imports"]
