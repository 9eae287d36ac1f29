"""Images for a multimodal judge: JPEG data URLs with EXIF orientation applied and a capped long side.

Judges see pixels the way a person would: a phone photo stored sideways with an EXIF
rotation tag is turned upright first, transparency is flattened onto white (a JPEG has no
alpha, and black backgrounds would change what the judge sees), and very large images are
scaled down so the request stays within what gateways accept.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_SIDE = 4096
"""Long-side cap in pixels; the paper's evaluator used 4096."""
DEFAULT_JPEG_QUALITY = 100
"""JPEG quality; the paper's evaluator used 100 so that fine text survives encoding."""


class ImageLoadError(ValueError):
    """An image file is missing or cannot be decoded; the message names the file."""


def load_upright_rgb(path: Path, *, max_side: int = DEFAULT_MAX_SIDE) -> Image.Image:
    """Open ``path``, apply its EXIF orientation, flatten alpha onto white, cap the long side."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"image not found: {path}")
    try:
        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened)
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageLoadError(f"cannot decode image {path}: {exc}") from exc
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        im = flat
    else:
        im = im.convert("RGB")
    longest = max(im.size)
    if max_side > 0 and longest > max_side:
        scale = max_side / longest
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.LANCZOS)
    return im


def image_data_url(path: Path, *, max_side: int = DEFAULT_MAX_SIDE, quality: int = DEFAULT_JPEG_QUALITY) -> str:
    """``data:image/jpeg;base64,...`` of the upright, capped image at ``path``."""
    im = load_upright_rgb(path, max_side=max_side)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality), optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_part(path: Path, *, max_side: int = DEFAULT_MAX_SIDE, quality: int = DEFAULT_JPEG_QUALITY) -> dict:
    """An OpenAI chat ``image_url`` content part for ``path``."""
    return {"type": "image_url", "image_url": {"url": image_data_url(path, max_side=max_side, quality=quality)}}
