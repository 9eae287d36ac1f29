"""Data URIs and wire helpers of ``genevolve_graph.safety.imaging`` (the decoding guards themselves
are tested in tests/tools/test_safe_decode.py), and flattening references to RGB."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from genevolve_graph.generators.references import flatten_to_rgb
from genevolve_graph.safety.imaging import UnsafeImageError, decode_data_uri, encode_png, sniff_format, to_data_uri


def image_bytes(fmt: str, size=(40, 30), color=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def png_with_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge size, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def uri(data: bytes, declared: str = "image/png") -> str:
    return f"data:{declared};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_data_uri_decodes_allowed_formats(fmt):
    image = decode_data_uri(uri(image_bytes(fmt)))
    assert image.size == (40, 30) and image.mode in ("RGB", "RGBA")


def test_declared_type_is_ignored_in_favour_of_the_bytes():
    assert decode_data_uri(uri(image_bytes("PNG"), declared="image/jpeg")).size == (40, 30)
    assert decode_data_uri(uri(image_bytes("JPEG"), declared="text/plain")).size == (40, 30)
    with pytest.raises(UnsafeImageError, match="not an allowed image format"):
        decode_data_uri(uri(b"<html><body>hello</body></html>"))
    with pytest.raises(UnsafeImageError, match="not an allowed image format"):
        decode_data_uri(uri(image_bytes("BMP"), declared="image/png"))


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("http://example.com/a.png", "not a data URI"),
        ("data:image/png,rawbytes", "not base64"),
        ("data:image/png;base64,@@@@", "invalid base64"),
        ("data:image/png;base64,", "empty"),
    ],
)
def test_bad_data_uris(value, fragment):
    with pytest.raises(UnsafeImageError, match=fragment):
        decode_data_uri(value)


def test_size_is_checked_on_the_base64_text_before_decoding():
    with pytest.raises(UnsafeImageError, match="more than the limit of 1,000 bytes"):
        decode_data_uri("data:image/png;base64," + "A" * 4000, max_bytes=1000)


def test_pixel_cap_and_bombs_in_data_uris():
    with pytest.raises(UnsafeImageError, match="pixel cap"):
        decode_data_uri(uri(image_bytes("PNG", size=(50, 50))), max_pixels=1000)
    with pytest.raises(UnsafeImageError, match="bomb|cap"):
        decode_data_uri(uri(png_with_header(100_000, 100_000)))  # 10^10 pixels in under 100 bytes


def test_wire_helpers():
    assert sniff_format(image_bytes("JPEG")) == "JPEG"
    assert sniff_format(image_bytes("BMP")) is None and sniff_format(b"GIF89a-not-really") is None
    png = encode_png(Image.new("RGB", (8, 8)))
    assert sniff_format(png) == "PNG"
    assert to_data_uri(png).startswith("data:image/png;base64,")
    assert to_data_uri(image_bytes("WEBP")).startswith("data:image/webp;base64,")
    assert decode_data_uri(to_data_uri(png)).size == (8, 8)


def test_transparent_references_flatten_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    flat = flatten_to_rgb(rgba)
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (255, 0, 0) and flat.getpixel((3, 3)) == (255, 255, 255)
    rgb = Image.new("RGB", (2, 2))
    assert flatten_to_rgb(rgb) is rgb
    assert flatten_to_rgb(Image.new("L", (2, 2), 7)).getpixel((0, 0)) == (7, 7, 7)
