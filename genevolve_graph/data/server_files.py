"""Which files named by a LangGraph Server's records the data pipeline may read here.

With ``data build --server`` the teacher's trajectories and the renders are made on the
server: a record's reference ``local_path`` and a render's ``output_path`` are paths on the
server's disk, named in the server's replies. ``batch`` and ``render`` never read such
paths; the data pipeline must (the filter checks and audits the references, the visual
filter judges the renders, the split copies them), which needs a disk this machine shares
with the server (``langgraph dev`` here, or a volume mounted at the same path). A reply is
data, so those paths are read only inside the folders the operator declares shared:
``--server-root`` folders, ``--server-output-dir``, the recipe's ``teacher.image_dir`` and
the bundled image folder. A record naming a path elsewhere is turned, as it arrives, into
that item's infrastructure failure (a teacher or render error naming the path and the
fix), so no later stage reads it.

:class:`SharedFilesOnly` wraps the ``--server`` executor of a stage; it changes nothing but
the record each server thread yields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genevolve_graph.safety.file_guard import is_within


def shared_roots(*, server_roots: tuple[str, ...] | list[str] = (), server_output_dir: str = "", image_dir: str | None = None) -> list[Path]:
    """The folders of the server's files this machine reads at the same paths."""
    from genevolve_graph.tools.local_images import DEFAULT_IMAGE_DIR

    named = [*server_roots, server_output_dir, image_dir or ""]
    return [DEFAULT_IMAGE_DIR] + [Path(p).expanduser() for p in named if p]


def outside_shared(record: dict[str, Any], roots: list[Path]) -> str | None:
    """Why a server-made record names a file this machine must not read (None when it does not)."""
    paths = []
    if record.get("server_thread"):  # a trajectory made there: its references are the server's files
        paths = [(f"reference {ref.get('img_id')}", ref.get("local_path")) for ref in record.get("reference_images") or []
                 if isinstance(ref, dict)]
    if record.get("render_server") and record.get("success"):
        paths.append(("the render's output_path", record.get("output_path")))
    for what, path in paths:
        if path and not any(is_within(str(path), root) for root in roots):
            return (f"{what} is the server's file {path}, outside the folders shared with this machine "
                    f"({', '.join(str(r) for r in roots)}); if that folder is shared at the same path here, pass it with --server-root")
    return None


@dataclass
class _Confined:
    """The stage as the server executor sees it, with each record checked as it arrives."""

    stage: Any
    roots: list[Path]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stage, name)

    def remote_record(self, row: Any, thread_id: str, values: dict[str, Any], seconds: float) -> dict[str, Any]:
        record = self.stage.remote_record(row, thread_id, values, seconds)
        problem = outside_shared(record, self.roots)
        if problem is None:
            return record
        where = ({"thread_id": thread_id, "server_thread": True} if self.stage.outcome_field == "termination"
                 else {"render_thread": thread_id, "render_server": record.get("render_server")})
        return {**self.stage.failure(row, problem), **where}


@dataclass
class SharedFilesOnly:
    """A ``--server`` executor whose records name only files inside ``roots``."""

    inner: Any
    roots: list[Path]

    async def execute(self, stage: Any, rows: list[Any], **kwargs: Any) -> Any:
        return await self.inner.execute(_Confined(stage, self.roots), rows, **kwargs)


__all__ = ["SharedFilesOnly", "outside_shared", "shared_roots"]
