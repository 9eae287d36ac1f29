"""--show-images: thumbnails as OpenAI image content parts."""

from __future__ import annotations

import base64
import io

from PIL import Image

from genevolve_graph.tools.base import ImageHit
from genevolve_graph.testing.search_servers import image_bytes
from genevolve_graph.tools.thumbnails import thumbnail_parts


def test_parts_are_labelled_data_url_thumbnails(tmp_path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes("photo", "jpeg", (600, 300)))
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (50, 80), (0, 0, 255, 90)).save(clear)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"<html>nope</html>")
    hits = [
        ImageHit(title="a photo", local_path=str(photo)),
        ImageHit(title="transparent", local_path=str(clear)),
        ImageHit(title="broken", local_path=str(broken)),
        ImageHit(title="missing", local_path=str(tmp_path / "gone.png")),
    ]
    parts = thumbnail_parts(hits, max_side=128, labels=["IMG_001", "IMG_002", "IMG_003", "IMG_004"])
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "text", "text"]
    assert parts[0] == {"type": "text", "text": "IMG_001:"}
    first = parts[1]["image_url"]["url"]
    assert first.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(first.split(",", 1)[1]))) as im:
        assert im.size == (128, 64)
    assert parts[3]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[4]["text"].startswith("IMG_003: (no thumbnail: not an allowed image format (looks like HTML)")
    assert parts[5]["text"].startswith("IMG_004: (no thumbnail:")


def test_titles_label_parts_without_ids(tmp_path) -> None:
    path = tmp_path / "x.webp"
    path.write_bytes(image_bytes("x", "webp", (40, 40)))
    parts = thumbnail_parts([ImageHit(title="a webp", local_path=str(path))])
    assert parts[0]["text"] == "a webp:" and parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_observation_content_is_text_unless_show_images(tmp_path) -> None:
    from genevolve_graph.tools.thumbnails import observation_content

    path = tmp_path / "a.png"
    path.write_bytes(image_bytes("a", "png", (300, 200)))
    hits = [ImageHit(title="a", local_path=str(path))]
    block = "--- image search result for [a] ---\nIMG_001: title: a\n--- end of image search result ---"
    assert observation_content(block, hits, ["IMG_001"], {}) == block  # off by default
    parts = observation_content(block, hits, ["IMG_001"], {"show_images": True, "thumbnail_max_side": 64})
    assert parts[0] == {"type": "text", "text": block}
    assert parts[1] == {"type": "text", "text": "IMG_001:"}
    with Image.open(io.BytesIO(base64.b64decode(parts[2]["image_url"]["url"].split(",", 1)[1]))) as im:
        assert max(im.size) == 64
    assert observation_content(block, [], [], {"show_images": True}) == block


def test_a_thumbnail_decodes_its_file_once(tmp_path, monkeypatch) -> None:
    """The file is checked and shrunk from one decode (it used to be decoded twice: once to
    check it, once more for the pixels)."""
    from genevolve_graph.safety import imaging
    from genevolve_graph.tools.thumbnails import thumbnail_data_url

    decodes: list[int] = []
    real = imaging._decode
    monkeypatch.setattr(imaging, "_decode", lambda data, *a, **k: decodes.append(len(data)) or real(data, *a, **k))
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes("photo", "jpeg", (600, 300)))
    url = thumbnail_data_url(photo, max_side=64)
    assert url.startswith("data:image/jpeg;base64,")
    assert decodes == [photo.stat().st_size]
