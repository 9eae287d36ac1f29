"""Offline image search: a folder of images with captions, ranked by BM25.

A caption comes from a sidecar ``NAME.json`` (``title``, ``caption``, ``url``,
``page_url``) or, without one, from the file name (``red_double_decker_bus.png``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from genevolve_graph.safety.imaging import UnsafeImageError, read_image_file
from genevolve_graph.tools.base import ImageHit, ImageSearchOutcome
from genevolve_graph.tools.bm25 import BM25Index

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

log = logging.getLogger(__name__)

DEFAULT_IMAGE_DIR = Path(__file__).resolve().parent.parent / "data" / "images"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}


class ImageFolderError(ValueError):
    """The image folder cannot be used."""


def read_folder(directory: Path) -> list[dict[str, str]]:
    if not directory.is_dir():
        raise ImageFolderError(f"image folder {directory} does not exist; pass --image-dir with a folder of captioned images")
    items: list[dict[str, str]] = []
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:  # only real images inside the folder are registered (a symlinked id_rsa is not)
            read_image_file(path, root=directory)
        except (UnsafeImageError, OSError) as exc:
            log.warning("image folder %s: skipped %s: %s", directory, path.name, exc)
            continue
        meta: dict[str, str] = {}
        sidecar = path.with_suffix(".json")
        if sidecar.is_file() and _inside(sidecar, directory):
            try:
                meta = json.loads(sidecar.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ImageFolderError(f"caption file {sidecar}: not JSON ({exc.msg})") from None
        words = path.stem.replace("_", " ").replace("-", " ")
        items.append(
            {
                "title": str(meta.get("title") or words),
                "caption": str(meta.get("caption") or words),
                "url": str(meta.get("url") or path.resolve().as_uri()),
                "page_url": str(meta.get("page_url", "")),
                "local_path": str(path.resolve()),
            }
        )
    if not items:
        raise ImageFolderError(f"image folder {directory} holds no usable images ({', '.join(sorted(IMAGE_SUFFIXES))} files that decode, inside the folder)")
    return items


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


@lru_cache(maxsize=16)
def _index(directory: str) -> tuple[list[dict[str, str]], BM25Index]:
    items = read_folder(Path(directory))
    return items, BM25Index([f"{i['title']} {i['caption']}" for i in items])


class LocalImageSearch:
    name = "local"

    def __init__(self, image_dir: str | Path = "") -> None:
        self.directory = Path(image_dir).expanduser() if image_dir else DEFAULT_IMAGE_DIR
        self._loaded: tuple[list[dict[str, str]], BM25Index] | None = None

    def load(self) -> tuple[list[dict[str, str]], BM25Index]:
        if self._loaded is None:
            self._loaded = _index(str(self.directory.resolve()))
        return self._loaded

    async def search_images(self, query: str, top_k: int) -> ImageSearchOutcome:
        # The folder is read once, off the event loop; later searches are in-memory.
        items, index = self._loaded or await asyncio.to_thread(self.load)
        hits = [
            ImageHit(title=items[i]["title"], url=items[i]["url"], local_path=items[i]["local_path"], page_url=items[i]["page_url"])
            for i in index.top(query, top_k)
        ]
        return ImageSearchOutcome(hits=hits)


def from_context(ctx: "AgentContext") -> LocalImageSearch:
    return LocalImageSearch(ctx.image_dir)
