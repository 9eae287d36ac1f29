"""Safe decoding of untrusted image bytes (genevolve_graph.safety.imaging)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from genevolve_graph.safety.imaging import UnsafeImageError, decode_image, decode_image_bytes
from genevolve_graph.testing.search_servers import image_bytes, png_declaring


@pytest.mark.parametrize("fmt, expected", [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("gif", "GIF")])
def test_allowed_formats_decode_to_loaded_rgb(fmt: str, expected: str) -> None:
    decoded = decode_image(image_bytes("cat", fmt, (40, 30)), max_pixels=10_000, max_bytes=100_000)
    assert decoded.format == expected
    assert decoded.image.size == (40, 30)
    assert decoded.image.mode == "RGB"


def test_animated_gif_gives_its_first_frame() -> None:
    data = image_bytes("anim", "gifanim", (20, 20))
    decoded = decode_image(data, max_pixels=10_000, max_bytes=100_000)
    assert decoded.format == "GIF" and decoded.frames == 3
    with Image.open(io.BytesIO(data)) as original:
        original.seek(0)
        first = original.convert("RGB")
    assert decoded.image.tobytes() == first.tobytes()


def test_transparency_is_kept_as_rgba() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (8, 8), (255, 0, 0, 100)).save(out, format="PNG")
    assert decode_image_bytes(out.getvalue(), max_pixels=100, max_bytes=10_000).mode == "RGBA"


def test_exif_orientation_is_applied() -> None:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.new("RGB", (40, 20), "white").save(out, format="JPEG", exif=exif)
    assert decode_image_bytes(out.getvalue(), max_pixels=10_000, max_bytes=100_000).size == (20, 40)


@pytest.mark.parametrize(
    "data, reason",
    [
        (png_declaring(100_000, 100_000), "decompression bomb"),  # 10^10 pixels: Pillow's hard limit
        (png_declaring(10_000, 10_000), "decompression bomb"),  # 10^8: Pillow only warns; the warning is an error here
        (png_declaring(3_000, 3_000), "exceeds the 1000000-pixel cap"),  # below Pillow's limits, above ours
        (b"<!DOCTYPE html><html><body>hello</body></html>", "looks like HTML"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "looks like SVG"),
        (b"BM" + b"\x00" * 60, "not an allowed image format"),  # BMP header: not on the list
        (b"", "empty body"),
    ],
    ids=["bomb-1e10", "bomb-warning", "pixel-cap", "html", "svg", "bmp", "empty"],
)
def test_refusals_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(UnsafeImageError, match=reason):
        decode_image_bytes(data, max_pixels=1_000_000 if reason.startswith("exceeds") else 10**9, max_bytes=1_000_000)


def test_truncated_image_is_refused() -> None:
    data = image_bytes("trunc", "jpeg", (256, 256))
    with pytest.raises(UnsafeImageError, match="truncated or corrupt JPEG"):
        decode_image_bytes(data[: len(data) * 2 // 3], max_pixels=10**6, max_bytes=10**6)


def test_byte_cap() -> None:
    data = image_bytes("big", "png", (64, 64))
    with pytest.raises(UnsafeImageError, match=f"{len(data)} bytes exceeds the 1000-byte cap"):
        decode_image_bytes(data, max_pixels=10**6, max_bytes=1000)


def test_extension_is_irrelevant_content_decides() -> None:
    # A PNG whatever it is called: the decoder never sees a name, only bytes.
    assert decode_image(image_bytes("x", "png"), max_pixels=10**6, max_bytes=10**6).format == "PNG"


def _two_thirds(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


@pytest.mark.parametrize(
    "data, reason",
    [
        (png_declaring(10_000, 10_000), "decompression bomb"),
        (png_declaring(3_000, 3_000), "exceeds the 1000000-pixel cap"),
        (b"BM" + b"\x00" * 60, "not an allowed image format"),
        (_two_thirds(image_bytes("trunc", "jpeg", (256, 256))), "truncated or corrupt JPEG"),
    ],
    ids=["bomb-warning", "pixel-cap", "bmp", "truncated"],
)
def test_verify_only_decode_refuses_what_the_full_decode_refuses(data: bytes, reason: str) -> None:
    """The downloader's one decode (upright=False) runs every check of the full decode."""
    with pytest.raises(UnsafeImageError, match=reason):
        decode_image(data, max_pixels=1_000_000, max_bytes=1_000_000, upright=False)


def test_verify_only_decode_makes_no_copy_of_a_still_image_but_converts_animations() -> None:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), "white").save(out, format="JPEG", exif=exif)
    still = decode_image(out.getvalue(), max_pixels=10_000, max_bytes=100_000, upright=False)
    assert still.format == "JPEG" and still.frames == 1 and still.image is None
    anim = decode_image(image_bytes("anim", "gifanim", (20, 20)), max_pixels=10_000, max_bytes=100_000, upright=False)
    assert anim.frames == 3 and anim.image is not None and anim.image.mode == "RGB"


@pytest.mark.parametrize("reader", ["read_image_file", "load_image_file"])
def test_image_files_are_held_to_the_download_rules(reader: str, tmp_path) -> None:
    """Both file readers refuse the same things: a FIFO, a symlink out of the root, an
    oversize file, bytes that are not an allowed image, a bomb header."""
    import os

    from genevolve_graph.safety import imaging

    read = getattr(imaging, reader)
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "ok.jpg").write_bytes(image_bytes("ok", "jpeg", (40, 30)))
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(image_bytes("outside", "jpeg", (40, 30)))
    (folder / "link.jpg").symlink_to(outside)
    os.mkfifo(folder / "pipe.png")
    (folder / "page.jpg").write_bytes(b"<!DOCTYPE html><html>no</html>")
    (folder / "bomb.png").write_bytes(png_declaring(3_000, 3_000))
    assert read(folder / "ok.jpg", root=folder) is not None
    for name, reason in (
        ("link.jpg", "leads outside"),
        ("pipe.png", "not a regular file"),
        ("page.jpg", "not an allowed image format"),
        ("bomb.png", "exceeds the 1000000-pixel cap"),
    ):
        with pytest.raises(UnsafeImageError, match=reason):
            read(folder / name, root=folder, max_pixels=1_000_000)
    with pytest.raises(UnsafeImageError, match="more than the 100-byte cap"):
        read(folder / "ok.jpg", max_bytes=100)
    loaded = imaging.load_image_file(folder / "ok.jpg")
    assert loaded.size == (40, 30) and loaded.mode == "RGB"
    assert imaging.read_image_file(folder / "ok.jpg") == image_bytes("ok", "jpeg", (40, 30))


def test_reading_an_image_file_decodes_it_once(tmp_path, monkeypatch) -> None:
    from genevolve_graph.safety import imaging

    decodes: list[int] = []
    real = imaging._decode
    monkeypatch.setattr(imaging, "_decode", lambda data, *a, **k: decodes.append(len(data)) or real(data, *a, **k))
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes("photo", "png", (30, 20)))
    imaging.read_image_file(path)
    assert decodes == [path.stat().st_size]
    imaging.load_image_file(path)
    assert decodes == [path.stat().st_size] * 2
