"""Long-term memory: the Decision Guides of SDL, in a LangGraph store or in a folder.

Training fills an experience buffer with Decision Guides (DESIGN.md §5). The same guides can
help any model at inference: with ``guidance="retrieve"`` in the context, the planner looks
up the top guide for the request (top-1 by cosine similarity, kept only at or above the gate,
0.84 as in training) and appends it to its system prompt, exactly as the SDL teacher reads it
(:func:`guided_system_prompt`, which the trainer's teacher branch uses too). Off by default,
so the protocol stays the released one.

One interface, :class:`GuideMemory`, two homes:

- :class:`StoreGuideMemory`: any LangGraph ``BaseStore`` with an embedding index
  (``InMemoryStore(index=store_index(embedder))`` in tests and notebooks, ``PostgresStore``
  with pgvector in production). The graph reads it from ``runtime.store``: compile the graph
  with ``store=`` (``build_graph(store=...)``, or ``langgraph.json``'s ``store`` section on a
  server) and nothing else changes. Guides live under ``("genevolve", "guides")`` by default.
- :class:`~genevolve_graph.experience.buffer.ExperienceBuffer`: today's folder format
  (``guides.jsonl`` + ``embeddings.npy``), named by the context field ``guide_dir``.

Which guide a trajectory used is recorded in its state (``guide``) and, for runs started by
:mod:`genevolve_graph.agent.runner` (``run``, ``batch``), in its checkpoint metadata
(``guide_id``, ``guide_score``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, Field

from genevolve_graph.experience.buffer import DEFAULT_GATE, ExperienceBuffer, Retrieval
from genevolve_graph.experience.embedders import Embedder, EmbedderEmbeddings
from genevolve_graph.experience.guides import DecisionGuide
from genevolve_graph.safety.protocol_tags import neutralize_tags

if TYPE_CHECKING:
    from langgraph.store.base import BaseStore

    from genevolve_graph.core.context import AgentContext

GUIDE_NAMESPACE: tuple[str, ...] = ("genevolve", "guides")
KEY_FIELD = "key"
"""The stored field the index embeds: the guide's trigger + summary (``DecisionGuide.key_text``)."""


class GuideMemoryError(ValueError):
    """A guide memory that cannot be used (no embedding index, missing folder, ...)."""


def guided_system_prompt(system_prompt: str, guide_text: str) -> str:
    """The SDL teacher's system prompt: the plain one, a blank line, the rendered guide.

    The guide is defused here too (``safety.protocol_tags``), whoever rendered it: a guide from
    a store or a folder is data, and must not close the system turn or forge a tool call."""
    guide_text = neutralize_tags(guide_text)
    return system_prompt + "\n\n" + guide_text if system_prompt else guide_text


@runtime_checkable
class GuideMemory(Protocol):
    """What the trainer and the planner need from an experience buffer."""

    gate: float

    def __len__(self) -> int: ...

    def add(self, guides: DecisionGuide | Iterable[DecisionGuide]) -> list[DecisionGuide]: ...

    def search(self, queries: Sequence[str]) -> list[Retrieval | None]:
        """Top-1 guide per query with its cosine similarity, regardless of the gate."""
        ...

    def retrieve(self, queries: Sequence[str]) -> list[Retrieval | None]:
        """Top-1 guide per query when its similarity reaches the gate, else None."""
        ...


# --------------------------------------------------------------------------- store


def store_index(embedder: Embedder | Embeddings, dims: int | None = None) -> dict[str, Any]:
    """The ``index`` argument of a LangGraph store for guides.

    ``dims`` defaults to the embedder's output size. Both ``fields`` and ``text_fields`` are
    set: ``SqliteStore`` reads only the latter (langgraph#8808), the others the former.
    """
    embeddings = embedder if isinstance(embedder, Embeddings) else EmbedderEmbeddings(embedder)
    if dims is None:
        dims = len(embeddings.embed_query("dimension probe"))
    return {"embed": embeddings, "dims": dims, "fields": [KEY_FIELD], "text_fields": [KEY_FIELD]}


class StoreGuideMemory:
    """Guides in a LangGraph ``BaseStore``: one item per guide, keyed by the guide's id.

    The item holds the guide (``guide``), the indexed key text (``key``) and an insertion
    sequence (``seq``) that keeps the rolling capacity: beyond ``capacity`` the oldest go.
    Scores are the store's similarity (cosine for ``InMemoryStore`` and for ``PostgresStore``
    with its default ``distance_type``), so the training gate means the same thing here.
    """

    def __init__(
        self,
        store: "BaseStore",
        *,
        namespace: Sequence[str] = GUIDE_NAMESPACE,
        gate: float = DEFAULT_GATE,
        capacity: int | None = None,
    ) -> None:
        if not -1.0 <= gate <= 1.0:
            raise ValueError(f"the retrieval gate is a cosine similarity in [-1, 1], got {gate}")
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if getattr(store, "index_config", None) is None:
            raise GuideMemoryError(
                f"{type(store).__name__} has no embedding index, so guides cannot be searched by meaning; "
                "create it with index=genevolve_graph.experience.memory.store_index(embedder) (PostgresStore also needs pgvector)"
            )
        self.store = store
        self.namespace = tuple(namespace)
        self.gate = gate
        self.capacity = capacity

    # ------------------------------------------------------------------ reading

    def _items(self) -> list[Any]:
        items, offset = [], 0
        while True:
            page = self.store.search(self.namespace, limit=100, offset=offset)
            items += page
            if len(page) < 100:
                return items
            offset += 100

    def guides(self) -> list[DecisionGuide]:
        """Every stored guide, oldest first."""
        items = sorted(self._items(), key=lambda item: item.value.get("seq", 0))
        return [DecisionGuide.model_validate(item.value["guide"]) for item in items]

    def __len__(self) -> int:
        return len(self._items())

    def get(self, guide_id: str) -> DecisionGuide | None:
        item = self.store.get(self.namespace, guide_id)
        return DecisionGuide.model_validate(item.value["guide"]) if item is not None else None

    async def aget(self, guide_id: str) -> DecisionGuide | None:
        item = await self.store.aget(self.namespace, guide_id)
        return DecisionGuide.model_validate(item.value["guide"]) if item is not None else None

    @staticmethod
    def _top(items: list[Any]) -> Retrieval | None:
        if not items or items[0].score is None:
            return None
        return Retrieval(DecisionGuide.model_validate(items[0].value["guide"]), float(items[0].score))

    def search(self, queries: Sequence[str]) -> list[Retrieval | None]:
        return [self._top(self.store.search(self.namespace, query=q, limit=1)) for q in queries]

    async def asearch(self, queries: Sequence[str]) -> list[Retrieval | None]:
        found = await asyncio.gather(*(self.store.asearch(self.namespace, query=q, limit=1) for q in queries))
        return [self._top(items) for items in found]

    def retrieve(self, queries: Sequence[str]) -> list[Retrieval | None]:
        return [hit if hit is not None and hit.score >= self.gate else None for hit in self.search(queries)]

    async def aretrieve(self, queries: Sequence[str]) -> list[Retrieval | None]:
        return [hit if hit is not None and hit.score >= self.gate else None for hit in await self.asearch(queries)]

    # ------------------------------------------------------------------ writing

    def add(self, guides: DecisionGuide | Iterable[DecisionGuide]) -> list[DecisionGuide]:
        """Store (and embed) guides; beyond ``capacity`` the oldest leave. Returns those added."""
        batch = [guides] if isinstance(guides, DecisionGuide) else list(guides)
        base = time.time_ns()
        for n, guide in enumerate(batch):
            value = {"guide": guide.model_dump(mode="json"), KEY_FIELD: guide.key_text(), "seq": base + n}
            self.store.put(self.namespace, guide.id, value, index=[KEY_FIELD])
        if self.capacity is not None and batch:
            items = sorted(self._items(), key=lambda item: item.value.get("seq", 0))
            for item in items[: max(0, len(items) - self.capacity)]:
                self.store.delete(self.namespace, item.key)
        return batch


# --------------------------------------------------------------------------- folder


def folder_guide(buffer: ExperienceBuffer, guide_id: str) -> DecisionGuide | None:
    return next((g for g in buffer.guides if g.id == guide_id), None)


@functools.lru_cache(maxsize=4)
def _open_folder(path: str, model: str, gate: float, stamp: float) -> ExperienceBuffer:
    from genevolve_graph.experience.embedders import SentenceEmbedder

    try:
        embedder = SentenceEmbedder(model)
    except ImportError as exc:
        raise GuideMemoryError(f"guide_dir needs sentence-transformers to embed requests ({exc}); pip install 'genevolve-graph[train]'") from None
    return ExperienceBuffer.load(path, embedder, gate=gate)


def open_folder_memory(path: str | Path, embedding_model: str, gate: float = DEFAULT_GATE) -> ExperienceBuffer:
    """A folder buffer (cached while ``guides.jsonl`` is unchanged)."""
    folder = Path(path).expanduser()
    guides = folder / "guides.jsonl"
    if not guides.is_file():
        raise GuideMemoryError(f"no experience buffer at {folder} (expected {guides}); pass the folder a training run wrote (guide_dir)")
    return _open_folder(str(folder.resolve()), embedding_model, gate, guides.stat().st_mtime)


# --------------------------------------------------------------------------- inference


class GuideUse(BaseModel):
    """The guide a trajectory's planner was given (recorded in the state as ``guide``)."""

    id: str
    score: float = Field(description="Cosine similarity between the request and the guide's key.")
    trigger: str
    source: str = Field(description="'store' (the graph's LangGraph store) or 'folder' (guide_dir).")
    text: str = Field(description="The guide as appended to the system prompt.")


def memory_for(ctx: "AgentContext", store: "BaseStore | None") -> StoreGuideMemory | ExperienceBuffer | None:
    """Where guides come from for this run: ``ctx.guide_dir`` when it is set (a named folder
    is a deliberate choice: under ``langgraph dev`` the server always brings a store, which
    would otherwise win silently), else the graph's store."""
    if ctx.guide_dir:
        return open_folder_memory(ctx.guide_dir, ctx.embedding_model, ctx.guide_gate)
    if store is not None:
        return StoreGuideMemory(store, namespace=tuple(ctx.guide_namespace.split("/")), gate=ctx.guide_gate)
    return None


async def find_guide(
    request: str, ctx: "AgentContext", store: "BaseStore | None", *, preset: dict[str, Any] | None = None
) -> GuideUse | None:
    """The guide for ``request`` under ``ctx`` (None when guidance is off or nothing passes the gate).

    ``preset`` is the run's metadata when the runner looked the guide up already
    (``guide_id``, ``guide_score``; an empty id means none passed the gate): the guide is then
    fetched by id instead of searched again, so state and checkpoint metadata name the same one.
    """
    if ctx.guidance != "retrieve":
        return None
    memory = memory_for(ctx, store)
    if memory is None:
        raise GuideMemoryError(
            "guidance='retrieve' needs guides: compile the graph with a store holding them "
            "(build_graph(store=...)) or set guide_dir to an experience buffer folder"
        )
    source = "store" if isinstance(memory, StoreGuideMemory) else "folder"
    if preset is not None and "guide_id" in preset:
        if not preset["guide_id"]:
            return None
        guide_id = str(preset["guide_id"])
        guide = await memory.aget(guide_id) if isinstance(memory, StoreGuideMemory) else folder_guide(memory, guide_id)
        if guide is None:
            raise GuideMemoryError(f"guide {guide_id!r} named in the run's metadata is not in the {source} memory any more")
        score = float(preset.get("guide_score") or 0.0)
    else:
        hits = await memory.aretrieve([request]) if isinstance(memory, StoreGuideMemory) else await asyncio.to_thread(memory.retrieve, [request])
        if hits[0] is None:
            return None
        guide, score = hits[0].guide, hits[0].score
    return GuideUse(id=guide.id, score=score, trigger=guide.retrieval_key.trigger, source=source, text=guide.render())


def guide_metadata(use: GuideUse | None) -> dict[str, Any]:
    """Checkpoint metadata naming the guide a run used ("" when guidance found none)."""
    return {"guide_id": use.id if use else "", "guide_score": round(use.score, 6) if use else None}


__all__ = [
    "EmbedderEmbeddings",
    "GUIDE_NAMESPACE",
    "GuideMemory",
    "GuideMemoryError",
    "GuideUse",
    "StoreGuideMemory",
    "find_guide",
    "guide_metadata",
    "guided_system_prompt",
    "memory_for",
    "open_folder_memory",
    "store_index",
]
