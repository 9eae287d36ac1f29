"""Safe decoding of untrusted image bytes (downloads, data URIs sent to the render service).

An image from the web or from a network client is hostile until proven otherwise: it may
be a decompression bomb (a tiny PNG that expands to gigabytes), a format Pillow supports
but nobody needs (and whose decoders carry most of the CVEs), or HTML/SVG served under an
image content type. So: the format is sniffed from the bytes and must be one of a short
allow-list, the declared type (file suffix, HTTP header, data-URI media type) is never
trusted, the pixel count is checked from the header before any pixel is decoded, and
Pillow's decompression-bomb warning is an error. Only the first frame of an animation is
kept. The result is a loaded RGB image with its EXIF orientation applied.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import threading
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF")
"""Formats accepted from untrusted sources (GIF: first frame only)."""

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 15 * 1024 * 1024

EXIF_ORIENTATION = 0x0112

MIME_TYPES: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}

# ``warnings.catch_warnings`` swaps the process-wide filter list (Python 3.11 has no
# context-local warnings), so concurrent decodes in threads could undo each other's filter.
_WARNINGS_LOCK = threading.Lock()

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)


class UnsafeImageError(ValueError):
    """Bytes that are not an acceptable image (wrong format, too large, corrupt, a bomb)."""


def decode_image_bytes(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> Image.Image:
    """Decode ``data`` into a loaded RGB image, or raise :class:`UnsafeImageError`.

    The format comes from the bytes alone; ``max_pixels`` is checked from the header
    before decoding; decompression-bomb warnings raise.
    """
    if not data:
        raise UnsafeImageError("empty image data")
    if len(data) > max_bytes:
        raise UnsafeImageError(f"image is {len(data):,} bytes, more than the limit of {max_bytes:,} bytes")
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=formats)
        except UnidentifiedImageError as exc:
            raise UnsafeImageError(f"not an image in an allowed format ({', '.join(formats)})") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UnsafeImageError(f"image rejected as a decompression bomb: {exc}") from exc
        except (OSError, SyntaxError, ValueError) as exc:  # Pillow signals bad headers with these
            raise UnsafeImageError(f"corrupt image header: {exc}") from exc
        try:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise UnsafeImageError(f"image has an empty size {width}x{height}")
            if width * height > max_pixels:
                raise UnsafeImageError(
                    f"image is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,}"
                )
            image.seek(0)  # animations: the first frame only
            image.load()
            result: Image.Image = image
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                result = ImageOps.exif_transpose(result)
            if result.mode != "RGB":
                result = result.convert("RGB")
        except UnsafeImageError:
            image.close()
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            image.close()
            raise UnsafeImageError(f"image rejected as a decompression bomb: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            image.close()
            raise UnsafeImageError(f"image data could not be decoded: {exc}") from exc
        if result is not image:  # copies are made only when needed (decoding dominates the service's overhead)
            image.close()
        return result


def sniff_format(data: bytes, formats: tuple[str, ...] = ALLOWED_FORMATS) -> str | None:
    """The Pillow format name of ``data`` if it is one of ``formats``, else ``None`` (header only)."""
    try:
        with Image.open(io.BytesIO(data), formats=formats) as image:
            return image.format
    except Exception:  # noqa: BLE001 - any failure means "not an acceptable image"
        return None


def decode_data_uri(
    uri: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> Image.Image:
    """Decode a ``data:[<type>];base64,<data>`` URI into an RGB image.

    The size is checked on the base64 text before decoding, so a huge URI costs nothing;
    the declared media type is ignored in favour of the sniffed format.
    """
    match = _DATA_URI.match(uri[:256])
    if not match:
        raise UnsafeImageError("not a data URI (expected 'data:image/...;base64,...')")
    if not match.group("b64"):
        raise UnsafeImageError("data URI is not base64-encoded (expected ';base64,')")
    payload = uri[match.end():]
    # 4 base64 characters carry 3 bytes; allow for padding and whitespace-free input only.
    if len(payload) > (max_bytes + 2) // 3 * 4:
        raise UnsafeImageError(f"image data URI holds more than the limit of {max_bytes:,} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnsafeImageError(f"data URI has invalid base64: {exc}") from exc
    return decode_image_bytes(data, max_pixels=max_pixels, max_bytes=max_bytes, formats=formats)


def to_data_uri(data: bytes, mime: str | None = None) -> str:
    """A base64 data URI for image bytes; the media type is sniffed when not given."""
    if mime is None:
        fmt = sniff_format(data)
        mime = MIME_TYPES.get(fmt or "", "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def encode_png(image: Image.Image, *, compress_level: int = 1) -> bytes:
    """PNG bytes of an image. Level 1: about as small as the default for photos, several times faster."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
