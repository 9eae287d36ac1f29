"""Interfaces every search backend implements, so that web backends plug in beside the
offline ones without touching the graph."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from genevolve_graph.net.errors import BackendUnavailable

__all__ = ["BackendUnavailable", "ImageHit", "ImageSearchBackend", "ImageSearchOutcome", "SearchBackend", "SearchHit"]


class SearchHit(BaseModel):
    """One text-search result."""

    title: str
    url: str = ""
    snippet: str = ""


class ImageHit(BaseModel):
    """One image-search result, already on local disk (downloaded or local)."""

    title: str
    url: str = ""
    local_path: str
    page_url: str = ""


class ImageSearchOutcome(BaseModel):
    """Images kept plus, for each dropped one, the reason (shown to the policy)."""

    hits: list[ImageHit]
    rejected: list[str] = []


@runtime_checkable
class SearchBackend(Protocol):
    """Text search: ``search(queries, top_k)`` runs one query per call."""

    name: str

    async def search(self, query: str, top_k: int) -> list[SearchHit]: ...


@runtime_checkable
class ImageSearchBackend(Protocol):
    """Image search whose hits are files on disk (web backends download them first)."""

    name: str

    async def search_images(self, query: str, top_k: int) -> ImageSearchOutcome: ...
