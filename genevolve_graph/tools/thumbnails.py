"""``--show-images``: thumbnails of retrieved images as OpenAI image content parts.

A vision policy can judge references by looking at them; the released GenEvolve
checkpoint saw text only, so this is off by default (``options["show_images"]``). The
tools node appends these parts to the image-search observation. Each image is decoded
again under the safety limits (a cache file may have been replaced), once for both the
check and the pixels (``imaging.load_image_file``), shrunk so that its
longer side is at most ``max_side`` and sent as a JPEG (PNG when it has transparency)
data URL, preceded by a text part naming it so the policy can tell which is which.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image

from genevolve_graph.safety.imaging import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, UnsafeImageError, load_image_file
from genevolve_graph.tools.base import ImageHit
from genevolve_graph.tools.web_options import WebOptions


def thumbnail_data_url(path: str | Path, *, max_side: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """A ``data:`` URL of a thumbnail of the image file at ``path`` (``UnsafeImageError`` if refused)."""
    image = load_image_file(path, max_pixels=max_pixels, max_bytes=max_bytes)  # a regular image file only, decoded once
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = BytesIO()
    if image.mode == "RGBA":
        image.save(out, format="PNG", optimize=True)
        mime = "image/png"
    else:
        image.save(out, format="JPEG", quality=80)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


def thumbnail_parts(
    hits: Sequence[ImageHit],
    *,
    max_side: int = 256,
    labels: Sequence[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[dict[str, Any]]:
    """OpenAI chat content parts showing each hit's image.

    For every hit: a text part (``labels[i]``, e.g. the ``IMG_###`` id, else the title)
    and an ``image_url`` part with the thumbnail. A file that cannot be read or decoded
    gives a text part saying so instead, never an exception.
    """
    if labels is not None and len(labels) != len(hits):
        raise ValueError(f"labels has {len(labels)} entries for {len(hits)} hits")
    parts: list[dict[str, Any]] = []
    for i, hit in enumerate(hits):
        label = labels[i] if labels is not None else hit.title
        try:
            url = thumbnail_data_url(hit.local_path, max_side=max_side, max_pixels=max_pixels, max_bytes=max_bytes)
        except (OSError, UnsafeImageError) as exc:
            parts.append({"type": "text", "text": f"{label}: (no thumbnail: {exc})"})
            continue
        parts.append({"type": "text", "text": f"{label}:"})
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def observation_content(
    block: str,
    hits: Sequence[ImageHit],
    labels: Sequence[str],
    options: Mapping[str, Any] | None,
) -> str | list[dict[str, Any]]:
    """The image-search observation as the tools node should store it.

    With ``options["show_images"]`` off (the default, as the released checkpoint was
    trained): the text block unchanged. With it on: a list of content parts, the text
    block first and then one labelled thumbnail per hit (``thumbnail_max_side`` pixels).
    """
    opts = WebOptions.from_options(options)
    if not opts.show_images or not hits:
        return block
    parts: list[dict[str, Any]] = [{"type": "text", "text": block}]
    parts += thumbnail_parts(hits, max_side=opts.thumbnail_max_side, labels=labels, max_pixels=opts.download_max_pixels, max_bytes=opts.download_max_bytes)
    return parts
