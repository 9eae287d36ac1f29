"""Fixtures for the web tools: a search API server and an image host on 127.0.0.1 (real
HTTP, started once per session, state reset per test), and options that allow-list the
image host for the downloader."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web-tool tests need fastapi and uvicorn (the 'test' extra)")

from genevolve_graph.testing.server_thread import ServerThread
from genevolve_graph.testing.search_servers import ImageHostState, SearchState, image_host_app, search_app
from genevolve_graph.tools.runcache import RUN_CACHE

SERPER_KEY = "sk-serper-SECRET-5f3a9c2e7d"
TAVILY_KEY = "tvly-SECRET-81b6e0d4a2"


class Servers:
    def __init__(self, search: ServerThread, images: ServerThread, search_state: SearchState, image_state: ImageHostState) -> None:
        self.search, self.images = search, images
        self.search_state, self.image_state = search_state, image_state

    @property
    def image_url(self) -> str:
        return self.images.url

    @property
    def image_hostport(self) -> str:
        return f"127.0.0.1:{self.images.port}"


@pytest.fixture(scope="session")
def _servers() -> Iterator[Servers]:
    search_state, image_state = SearchState(serper_key=SERPER_KEY, tavily_key=TAVILY_KEY), ImageHostState()
    search, images = ServerThread(search_app(search_state)).start(), ServerThread(image_host_app(image_state)).start()
    try:
        search_state.image_base = images.url
        yield Servers(search, images, search_state, image_state)
    finally:
        search.stop()
        images.stop()


@pytest.fixture
def servers(_servers: Servers, monkeypatch: pytest.MonkeyPatch) -> Servers:
    """Both servers, with fresh state, the run cache emptied and no real keys in the environment."""
    _servers.search_state.reset()
    _servers.image_state.reset()
    RUN_CACHE.clear()
    for name in ("SERPER_API_KEY", "SERPER_BASE_URL", "TAVILY_API_KEY", "TAVILY_BASE_URL", "SEARXNG_URL", "IMAGE_DOWNLOAD_DIR"):
        monkeypatch.delenv(name, raising=False)
    return _servers


@pytest.fixture
def web_options(servers: Servers, tmp_path: Path) -> dict[str, Any]:
    """Context options: the image host allow-listed, a private cache dir, fast retries."""
    return {
        "image_download_dir": str(tmp_path / "images"),
        "allow_hosts": [servers.image_hostport],
        "search_retry_initial_delay": 0.01,
        "search_retry_max_delay": 0.05,
        "search_timeout": 5,
        "download_timeout": 5,
    }


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (a backend that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
