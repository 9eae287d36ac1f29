"""Our state models are safe for every checkpointer, with no ``serde=`` argument.

LangGraph's ``JsonPlusSerializer`` stores a pydantic model as (module, class, field values)
and, when it reads one back, rebuilds only the types on its allow-list. Types off the list
are rebuilt with a "Deserializing unregistered type" warning in the default mode and
returned as plain dicts under ``LANGGRAPH_STRICT_MSGPACK=true``. ``compile()`` widens the
list only for the compiled graph's own copy of the saver, and only in strict mode, so a
bare ``InMemorySaver()``, ``SqliteSaver`` or ``PostgresSaver`` (and anything reading it
directly: an export script, the API server) would warn about, or lose, our types.

Our models (``Reference``, ``Program``, ``RenderResult``) are plain data: rebuilding one
runs pydantic validation of strings and numbers, never arbitrary code. So they are added to
the serializer's process-wide list of safe types, which every ``JsonPlusSerializer``
consults at read time (the same list that already holds LangChain's message types). That is
a module constant of ``langgraph.checkpoint.serde._msgpack``; if a later LangGraph drops it,
this becomes a no-op and ``persistence.serializer()`` (an explicit allow-list) still works.

The stored module name is ``genevolve_graph.state``, the models' public path (an alias of
``core.state``), whatever module defines them: it is part of the checkpoint format, so
trace databases written before and after the package's layout changed read the same.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

PUBLIC_STATE_MODULE = "genevolve_graph.state"
"""The module name checkpoints record for our models (see the module docstring)."""

STATE_TYPES: tuple[tuple[str, str], ...] = (
    ("genevolve_graph.state", "Reference"),
    ("genevolve_graph.state", "Program"),
    ("genevolve_graph.state", "RenderResult"),
)


def register_safe_types(types: tuple[tuple[str, str], ...] = STATE_TYPES) -> bool:
    """Add ``types`` to LangGraph's safe msgpack types; ``False`` when that list is gone."""
    try:
        from langgraph.checkpoint.serde import _msgpack
    except ImportError:  # pragma: no cover - a LangGraph without the module
        return False
    current = getattr(_msgpack, "SAFE_MSGPACK_TYPES", None)
    if not isinstance(current, frozenset):  # pragma: no cover - the layout changed
        logger.debug("langgraph's SAFE_MSGPACK_TYPES not found; pass persistence.serializer() as serde")
        return False
    missing = set(types) - current
    if missing:
        _msgpack.SAFE_MSGPACK_TYPES = current | missing
    return True


__all__ = ["PUBLIC_STATE_MODULE", "STATE_TYPES", "register_safe_types"]
