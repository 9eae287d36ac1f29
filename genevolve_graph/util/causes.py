"""Finding the error behind an error: SDKs wrap what their transport or hooks raise."""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)

MAX_CHAIN = 8
"""Links followed at most (a cycle or a very long chain ends the search)."""


def caused_by(exc: BaseException | None, kind: type[E]) -> E | None:
    """The ``kind`` error that ``exc`` is, or was caused by (``__cause__``, else
    ``__context__``), within ``MAX_CHAIN`` links; None when there is none."""
    seen = 0
    while exc is not None and seen < MAX_CHAIN:
        if isinstance(exc, kind):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
