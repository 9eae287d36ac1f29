"""Safe decoding of untrusted image bytes (downloads, data URLs sent to the render service).

Whatever a web server or a client sends is treated as hostile until Pillow has decoded it
under limits: only JPEG, PNG, WebP and GIF (first frame) are accepted, recognised by their
content (never by file extension or Content-Type); the byte size and the pixel count are
capped *before* pixel data is decoded; Pillow's decompression-bomb warning is an error; a
truncated or corrupt file is an error. Every refusal is an ``UnsafeImageError`` whose
message says why in a few words, so it can be shown to a user or a policy as it is.

The render service uses the same guards for references sent as data URIs
(``decode_data_uri``), and the helpers at the end encode images for the wire.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import threading
import warnings
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF")
"""Pillow format names accepted from untrusted sources."""

DEFAULT_MAX_BYTES = 15 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000

MIME_TYPES: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)

# ``warnings.catch_warnings`` swaps a process-global filter list (Python 3.11 has no
# context-local warnings), so two threads decoding at once could restore each other's
# filters. Decodes hold this lock while the "bomb warning is an error" filter is active.
_WARNINGS_LOCK = threading.Lock()


class UnsafeImageError(ValueError):
    """Untrusted bytes that are not an acceptable image; the message gives the reason."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image plus what the bytes turned out to be.

    ``image`` is fully loaded, EXIF-orientation applied, in mode RGB or RGBA (None after a
    verify-only decode, ``upright=False``, of a still image);
    ``format`` is the detected Pillow format; ``frames`` the frame count of the source
    (only the first frame is decoded).
    """

    image: Image.Image | None
    format: str
    frames: int


def decode_image_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """Decode untrusted ``data`` into a loaded RGB/RGBA image or raise ``UnsafeImageError``."""
    return decode_image(data, max_pixels=max_pixels, max_bytes=max_bytes).image


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES, upright: bool = True
) -> DecodedImage:
    """Like ``decode_image_bytes`` but also reports the detected format and frame count.

    ``upright=False`` is for callers that only verify the bytes and keep them as they are
    (the downloader): every check runs the same (header, caps, the full decode of the
    first frame, the EXIF block parsed), but the rotated RGB copy is made only for animated
    images and GIFs, which such a caller re-encodes; otherwise the decoded
    frame is not kept (``image`` is None). One decode, no copies nobody reads."""
    if max_pixels <= 0 or max_bytes <= 0:
        raise ValueError("max_pixels and max_bytes must be positive")
    if not data:
        raise UnsafeImageError("empty body")
    if len(data) > max_bytes:
        raise UnsafeImageError(f"{len(data)} bytes exceeds the {max_bytes}-byte cap")
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return _decode(data, max_pixels, upright)


def _decode(data: bytes, max_pixels: int, upright: bool = True) -> DecodedImage:
    with _open_header(data) as im:
        fmt = im.format or "?"
        if fmt not in ALLOWED_FORMATS:  # defensive: formats= already restricts this
            raise UnsafeImageError(f"format {fmt} is not allowed")
        width, height = im.size
        if width <= 0 or height <= 0:
            raise UnsafeImageError(f"invalid dimensions {width}x{height}")
        if width * height > max_pixels:
            raise UnsafeImageError(f"{width}x{height} = {width * height} pixels exceeds the {max_pixels}-pixel cap")
        frames = int(getattr(im, "n_frames", 1) or 1)
        try:
            im.seek(0)
            im.load()
            if upright or fmt == "GIF" or frames > 1:
                out = ImageOps.exif_transpose(im)
                out = out.convert("RGBA" if _has_alpha(out) else "RGB")
            else:
                im.getexif()  # parsed as exif_transpose would: a broken EXIF block is refused here too
                out = None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UnsafeImageError(f"decompression bomb refused ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - OSError for truncation, anything for malice
            raise UnsafeImageError(f"truncated or corrupt {fmt} data ({exc})") from None
    if out is not None and out.width * out.height > max_pixels:
        raise UnsafeImageError(f"{out.width}x{out.height} pixels exceeds the {max_pixels}-pixel cap")
    return DecodedImage(image=out, format=fmt, frames=frames)


def read_image_file(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """The bytes of an image file on disk, held to the same rules as a download.

    Only a regular file (not a FIFO, a device or a folder) whose bytes decode as an allowed
    image under the limits is accepted; with ``root``, the path (symlinks followed) must
    also stay inside that folder. A path named by a trace database or an image registry is
    no more trusted than a URL. Raises ``UnsafeImageError`` with the reason; an ``OSError``
    (a missing file) passes through. The bytes are verified by one full decode whose frame
    is not kept (``decode_image(upright=False)``); a caller that needs the pixels too uses
    :func:`load_image_file`, which decodes once for both.
    """
    data = _read_regular_file(path, root=root, max_bytes=max_bytes)
    decode_image(data, max_pixels=max_pixels, max_bytes=max_bytes, upright=False)  # proves it is an image; raises why not
    return data


def load_image_file(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Image.Image:
    """The image in a file on disk, loaded upright as RGB/RGBA, under the rules of
    :func:`read_image_file` (regular file, inside ``root``, caps, allowed format): one read,
    one decode that both checks the bytes and gives the pixels."""
    data = _read_regular_file(path, root=root, max_bytes=max_bytes)
    return decode_image(data, max_pixels=max_pixels, max_bytes=max_bytes).image


def _read_regular_file(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None, max_bytes: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes`` (inside
    ``root`` when given, symlinks followed); nothing is decoded here."""
    where = Path(path).expanduser()
    if root is not None:
        folder = Path(root).expanduser().resolve()
        target = where.resolve()
        if not target.is_relative_to(folder):
            raise UnsafeImageError(f"{where} leads outside {folder} (to {target}); only images inside the folder are used")
    fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeImageError(f"{where} is not a regular file")
        if info.st_size > max_bytes:
            raise UnsafeImageError(f"{where} is {info.st_size} bytes, more than the {max_bytes}-byte cap")
        return stream.read(max_bytes + 1)


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def _sniff(data: bytes) -> str:
    """A short guess of what non-image bytes are, for the refusal message."""
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "looks like SVG"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head or b"<body" in head:
        return "looks like HTML"
    if head.startswith((b"{", b"[")):
        return "looks like JSON"
    return "unrecognised content"


# --------------------------------------------------------------------------- data URIs and wire helpers


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name of ``data`` if it is an allowed format, else ``None`` (header only)."""
    try:
        with Image.open(BytesIO(data), formats=list(ALLOWED_FORMATS)) as image:
            return image.format
    except Exception:  # noqa: BLE001 - any failure means "not an acceptable image"
        return None


def data_uri_bytes(uri: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a ``data:[<type>];base64,<data>`` URI, size-checked on the base64 text
    before decoding (so a huge URI costs nothing); nothing is decoded as an image yet."""
    match = _DATA_URI.match(uri[:256])
    if not match:
        raise UnsafeImageError("not a data URI (expected 'data:image/...;base64,...')")
    if not match.group("b64"):
        raise UnsafeImageError("data URI is not base64-encoded (expected ';base64,')")
    payload = uri[match.end():]
    if len(payload) > (max_bytes + 2) // 3 * 4:  # 4 base64 characters carry 3 bytes
        raise UnsafeImageError(f"image data URI holds more than the limit of {max_bytes:,} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnsafeImageError(f"data URI has invalid base64: {exc}") from None


def probe_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header alone (no pixel data is decoded)."""
    with _open_header(data) as image:
        return image.size


def _open_header(data: bytes) -> Image.Image:
    """The image opened lazily (header only) as one of the allowed formats; any refusal of the
    parser becomes an :class:`UnsafeImageError` naming why."""
    try:
        return Image.open(BytesIO(data), formats=list(ALLOWED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnsafeImageError(f"decompression bomb refused ({exc})") from None
    except UnidentifiedImageError:
        raise UnsafeImageError(f"not an allowed image format ({_sniff(data)}); allowed: JPEG, PNG, WebP, GIF") from None
    except Exception as exc:  # noqa: BLE001 - hostile bytes can break a parser in any way
        raise UnsafeImageError(f"corrupt image header ({type(exc).__name__}: {exc})") from None


def decode_data_uri(uri: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """Decode a ``data:[<type>];base64,<data>`` URI with the guards of ``decode_image_bytes``.

    The size is checked on the base64 text before decoding, so a huge URI costs nothing;
    the declared media type is ignored in favour of what the bytes are.
    """
    return decode_image_bytes(data_uri_bytes(uri, max_bytes=max_bytes), max_pixels=max_pixels, max_bytes=max_bytes)


def to_data_uri(data: bytes, mime: str | None = None) -> str:
    """A base64 data URI for image bytes; the media type is sniffed when not given."""
    if mime is None:
        mime = MIME_TYPES.get(sniff_format(data) or "", "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def encode_png(image: Image.Image, *, compress_level: int = 1) -> bytes:
    """PNG bytes of an image. Level 1: about as small as the default for photos, several times faster."""
    buffer = BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
