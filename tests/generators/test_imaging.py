"""Safe decoding of untrusted image bytes and data URIs (shared with the downloader)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from genevolve_graph.imaging import (
    UnsafeImageError,
    decode_data_uri,
    decode_image_bytes,
    encode_png,
    sniff_format,
    to_data_uri,
)


def image_bytes(fmt: str, size=(40, 30), color=(10, 120, 200), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def png_with_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge size, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_allowed_formats_decode_to_rgb(fmt):
    image = decode_image_bytes(image_bytes(fmt))
    assert image.mode == "RGB" and image.size == (40, 30)


def test_gif_keeps_the_first_frame_only():
    frames = [Image.new("P", (20, 10), index) for index in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    image = decode_image_bytes(buffer.getvalue())
    assert image.mode == "RGB" and image.size == (20, 10)


def test_exif_orientation_is_applied():
    source = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = source.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buffer = io.BytesIO()
    source.save(buffer, format="JPEG", exif=exif)
    assert decode_image_bytes(buffer.getvalue()).size == (20, 40)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"<html><body>not an image</body></html>", "allowed format"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "allowed format"),
        (image_bytes("BMP"), "allowed format"),
        (image_bytes("TIFF"), "allowed format"),
    ],
)
def test_rejects_what_is_not_an_allowed_image(data, fragment):
    with pytest.raises(UnsafeImageError, match=fragment):
        decode_image_bytes(data)


def test_rejects_truncated_image():
    noisy = Image.effect_noise((200, 200), 50).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG")
    data = buffer.getvalue()
    with pytest.raises(UnsafeImageError, match="decoded"):
        decode_image_bytes(data[: len(data) // 3])


def test_byte_limit():
    data = image_bytes("PNG")
    with pytest.raises(UnsafeImageError, match="more than the limit of 10 bytes"):
        decode_image_bytes(data, max_bytes=10)


def test_pixel_limit_is_checked_from_the_header():
    with pytest.raises(UnsafeImageError, match="more than the limit of 1,000"):
        decode_image_bytes(image_bytes("PNG", size=(50, 50)), max_pixels=1000)


def test_decompression_bomb_header_is_rejected_without_decoding():
    bomb = png_with_header(100_000, 100_000)  # 10^10 pixels in under 100 bytes
    assert len(bomb) < 200
    with pytest.raises(UnsafeImageError, match="bomb|limit"):
        decode_image_bytes(bomb)


def test_decompression_bomb_warning_is_an_error():
    # Above Pillow's own warning threshold but under our pixel cap: the warning must fail it.
    bomb = png_with_header(10_000, 9_000)  # 9e7 > Image.MAX_IMAGE_PIXELS (~8.9e7)
    with pytest.raises(UnsafeImageError, match="bomb"):
        decode_image_bytes(bomb, max_pixels=10**9)


def test_data_uri_round_trip_ignores_the_declared_type():
    png = image_bytes("PNG")
    declared_wrong = "data:image/jpeg;base64," + base64.b64encode(png).decode()
    assert decode_data_uri(declared_wrong).size == (40, 30)
    assert to_data_uri(png).startswith("data:image/png;base64,")
    html = "data:image/png;base64," + base64.b64encode(b"<html></html>").decode()
    with pytest.raises(UnsafeImageError, match="allowed format"):
        decode_data_uri(html)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("http://example.com/a.png", "not a data URI"),
        ("data:image/png,rawbytes", "not base64"),
        ("data:image/png;base64,@@@@", "invalid base64"),
    ],
)
def test_bad_data_uris(uri, fragment):
    with pytest.raises(UnsafeImageError, match=fragment):
        decode_data_uri(uri)


def test_data_uri_size_is_checked_before_decoding():
    uri = "data:image/png;base64," + "A" * 4000
    with pytest.raises(UnsafeImageError, match="more than the limit of 1,000 bytes"):
        decode_data_uri(uri, max_bytes=1000)


def test_sniff_and_encode():
    assert sniff_format(image_bytes("JPEG")) == "JPEG"
    assert sniff_format(b"GIF89a-not-really") is None
    png = encode_png(Image.new("RGB", (8, 8)))
    assert sniff_format(png) == "PNG"
