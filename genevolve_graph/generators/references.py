"""Reading a program's reference images from disk, and the output size they imply.

All local backends (diffusers, the service client, Gemini) read references the same way
and agree on the output size, so a program renders at the same size on each.
"""

from __future__ import annotations

import io
import stat
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from genevolve_graph.generators.base import RenderError
from genevolve_graph.safety.imaging import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    MIME_TYPES,
    UnsafeImageError,
    decode_image_bytes,
    encode_png,
    sniff_format,
)
from genevolve_graph.core.state import Program, Reference

SIZE_MULTIPLE = 16
DEFAULT_LONG_SIDE = 1024
LOCAL_MAX_REFERENCE_BYTES = 64 * 1024 * 1024
"""Reference files on our own disk may be larger than downloads; they are scaled before sending."""
MAX_SEND_SIDE = 2048
"""References with a longer side are scaled down before they leave the process (generators resize them anyway)."""
ORIENTATION_TAG = 0x0112


def read_reference_bytes(reference: Reference, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file bytes of one reference, with a clear error naming it when absent."""
    label = reference.img_id or "reference"
    if not reference.local_path:
        raise RenderError(f"{label}: the reference has no local file (local_path is empty); it must be downloaded before rendering")
    path = Path(reference.local_path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise RenderError(f"{label}: reference file not found: {path}") from None
    except OSError as exc:
        raise RenderError(f"{label}: reference file {path} cannot be read: {exc}") from None
    if size > max_bytes:
        raise RenderError(f"{label}: reference file {path} is {size:,} bytes, more than the limit of {max_bytes:,}")
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or a device would block or never end
        raise RenderError(f"{label}: reference file {path} is not a regular file")
    with path.open("rb") as stream:
        return stream.read(max_bytes + 1)


def flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB for a pipeline: transparent parts become white (as a viewer shows them), not black."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def load_reference_image(
    reference: Reference, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> Image.Image:
    """One reference as a loaded RGB image (decoded with the same guards as downloads)."""
    data = read_reference_bytes(reference, max_bytes=max_bytes)
    try:
        return flatten_to_rgb(decode_image_bytes(data, max_pixels=max_pixels, max_bytes=max_bytes))
    except UnsafeImageError as exc:
        raise RenderError(f"{reference.img_id or 'reference'}: {reference.local_path}: {exc}") from None


def load_reference_images(program: Program, **limits: int) -> list[Image.Image]:
    """All references of a program, in program order."""
    return [load_reference_image(reference, **limits) for reference in program.reference_images]


@dataclass(frozen=True)
class PreparedReference:
    """Reference bytes ready to send to a remote generator."""

    data: bytes
    mime: str
    size: tuple[int, int]
    """Upright (width, height) of the original image."""


def prepare_reference(data: bytes, *, max_bytes: int = 12 * 1024 * 1024, max_side: int = MAX_SEND_SIDE) -> PreparedReference:
    """Reference bytes for a remote generator (render service, Gemini).

    Small JPEG/PNG/WebP files travel as they are: only their header is read here, and the
    receiver decodes them with its own guards. Anything else (GIF, large files, very large
    images) is decoded with the download guards, scaled to ``max_side`` and sent as PNG.
    """
    fmt = sniff_format(data)
    if fmt in ("JPEG", "PNG", "WEBP") and len(data) <= max_bytes:
        try:
            with Image.open(io.BytesIO(data), formats=(fmt,)) as probe:
                width, height = probe.size
                if probe.getexif().get(ORIENTATION_TAG) in (5, 6, 7, 8):
                    width, height = height, width
        except Exception:  # noqa: BLE001 - the full decode below reports what is wrong
            width = height = max_side + 1
        if max(width, height) <= max_side:
            return PreparedReference(data, MIME_TYPES[fmt], (width, height))
    image = decode_image_bytes(data, max_pixels=DEFAULT_MAX_PIXELS, max_bytes=max(max_bytes, len(data)))
    size = image.size
    image.thumbnail((max_side, max_side))
    return PreparedReference(encode_png(image), "image/png", size)


def prepare_program_references(program: Program, *, max_bytes: int = 12 * 1024 * 1024) -> list[PreparedReference]:
    """Every reference of a program prepared for sending, with errors naming the reference."""
    prepared = []
    for reference in program.reference_images:
        data = read_reference_bytes(reference, max_bytes=LOCAL_MAX_REFERENCE_BYTES)
        try:
            prepared.append(prepare_reference(data, max_bytes=max_bytes))
        except UnsafeImageError as exc:
            raise RenderError(f"{reference.img_id or 'reference'}: {reference.local_path}: {exc}") from None
    return prepared


def output_size(reference_size: tuple[int, int] | None, *, long_side: int = DEFAULT_LONG_SIDE, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(width, height) with the reference's aspect, the long side ``long_side``, both multiples of ``multiple``.

    Without a reference the image is square.
    """
    if long_side < multiple:
        raise ValueError(f"long_side must be at least {multiple}, not {long_side}")
    if reference_size is None:
        side = max(multiple, long_side // multiple * multiple)
        return side, side
    width, height = reference_size
    scale = long_side / max(width, height)

    def snap(value: float) -> int:
        return max(multiple, int(round(value * scale / multiple)) * multiple)

    return snap(width), snap(height)
