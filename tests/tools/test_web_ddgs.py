"""The ddgs backend: its result mapping (offline) and, on request, a live query."""

from __future__ import annotations

import os

import pytest

from genevolve_graph.tools.duckduckgo import DuckDuckGoBackend, image_candidates, text_hits
from genevolve_graph.tools.web_options import WebOptions


def test_text_rows_become_hits() -> None:
    rows = [
        {"title": "Okapi - Wikipedia", "href": "https://en.wikipedia.org/wiki/Okapi", "body": "The okapi is a giraffid."},
        {"title": "no link", "body": "dropped"},
        {"title": "", "href": "https://example.org/x", "body": ""},
    ]
    hits = text_hits(rows, 5)
    assert [(h.title, h.url) for h in hits] == [("Okapi - Wikipedia", "https://en.wikipedia.org/wiki/Okapi"), ("https://example.org/x", "https://example.org/x")]


def test_image_rows_become_candidates() -> None:
    rows = [
        {"title": "Okapi", "image": "https://upload.example.org/okapi.jpg", "thumbnail": "https://t.example/1", "url": "https://en.wikipedia.org/wiki/Okapi", "height": 800, "width": 1200, "source": "Bing"},
        {"title": "no image", "url": "https://example.org"},
    ]
    assert [(c.url, c.page_url) for c in image_candidates(rows, 5)] == [("https://upload.example.org/okapi.jpg", "https://en.wikipedia.org/wiki/Okapi")]


@pytest.mark.skipif(os.environ.get("GENEVOLVE_LIVE_SEARCH") != "1", reason="reaches the internet; set GENEVOLVE_LIVE_SEARCH=1 to query DuckDuckGo for real")
async def test_live_query(tmp_path) -> None:  # pragma: no cover - needs the internet
    backend = DuckDuckGoBackend(WebOptions.from_options({"image_download_dir": str(tmp_path)}))
    assert await backend.search("okapi", 3)
