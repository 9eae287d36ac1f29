"""``langgraph dev`` driven by a hostile cross-origin caller (docs/security.md).

The server holds an API key in its environment. A caller from a foreign origin tries to
make it send that key to the caller's own endpoint (a loopback HTTP server that records
every ``Authorization`` header it receives) and to write files outside the operator's root.
Both are refused with a clear error; the CORS preflight from a foreign origin is refused
too, while Studio's origin and loopback origins stay allowed.
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from genevolve_graph.testing.server_thread import ServerThread

from ..scripts import PARIS, PARIS_SCRIPT
from .conftest import ROOT
from .dev_server import langgraph_dev

pytest.importorskip("langgraph_api", reason="the dev-server test needs the studio extra: pip install 'genevolve-graph[studio]'")
langgraph_sdk = pytest.importorskip("langgraph_sdk")
httpx = pytest.importorskip("httpx")

SERVER_KEY = "sk-server-secret-0123456789abcdef"
FOREIGN = "https://attacker.example"


class Recorder:
    """An endpoint of the caller's choosing: it records what reaches it."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.paths: list[str] = []

        async def anything(request: Request) -> JSONResponse:
            self.paths.append(request.url.path)
            self.authorizations.append(request.headers.get("authorization", ""))
            return JSONResponse({"error": "recorded"}, status_code=500)

        self.app = Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(f"{url}/threads", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "content-type"}, timeout=10)


def run_errors(client, context: dict) -> list:
    thread = client.threads.create()
    parts = list(client.runs.stream(thread["thread_id"], "genevolve", input={"request": PARIS}, context=context,
                                    stream_mode=["updates"]))
    return [p.data for p in parts if p.event == "error"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_cross_origin_caller_gets_neither_the_key_nor_the_file_system(tmp_path, subprocess_env, scripted_server):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    policy = scripted_server({PARIS: PARIS_SCRIPT})  # the operator's own endpoint
    recorder = Recorder()
    with ServerThread(recorder.app) as evil_url:
        env = dict(subprocess_env, OPENAI_API_KEY=SERVER_KEY, GENEVOLVE_TRACE_DB=str(tmp_path / "traces.sqlite"),
                   GENEVOLVE_ALLOWED_ROOTS=str(root), GENEVOLVE_RENDERS_DIR=str(root / "renders"),
                   GENEVOLVE_ALLOWED_BASE_URLS=policy.base_url)
        with langgraph_dev(ROOT, tmp_path / "dev.log", env) as server:
            # CORS: a foreign page may not even ask; Studio and loopback pages may.
            refused = preflight(server.url, FOREIGN)
            assert refused.status_code >= 400 and "access-control-allow-origin" not in refused.headers
            for origin in ("https://smith.langchain.com", "http://localhost:3000", "http://127.0.0.1:5173"):
                allowed = preflight(server.url, origin)
                assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == origin, origin

            # a foreign page's request is refused before anything runs (tests/security/test_served_requests.py);
            # the context rules below hold for any client that gets past that, e.g. a tool on this host
            assert httpx.post(f"{server.url}/threads", json={}, headers={"Origin": FOREIGN}, timeout=10).status_code == 403
            client = langgraph_sdk.get_sync_client(url=server.url)
            # 1. The server's key never goes to an endpoint the caller chose.
            errors = run_errors(client, {"policy": "openai", "base_url": f"{evil_url}/v1", "model": "m", "renderer": "none"})
            assert errors and "GENEVOLVE_ALLOWED_BASE_URLS" in str(errors) and "base_url" in str(errors)
            # the same key through a search backend's endpoint option
            errors = run_errors(client, {"search": "serper", "options": {"serper_base_url": evil_url}, "renderer": "none"})
            assert errors and "serper_base_url" in str(errors)

            # 2. Files stay under the root: output_dir, a traversing output name, read paths.
            assert run_errors(client, {"output_dir": str(outside)})
            assert run_errors(client, {"output_dir": str(root), "options": {"output_name": "../outside/x.png"}})
            assert run_errors(client, {"corpus": "/etc/passwd", "renderer": "none"})
            link = root / "link"
            link.symlink_to(outside, target_is_directory=True)  # a symlink out of the root is outside too
            assert run_errors(client, {"output_dir": str(link)})

            # 3. What the operator allows still works: its endpoint, and a folder under the root.
            assert not run_errors(client, {"policy": "openai", "base_url": policy.base_url, "model": "genevolve-8b",
                                           "output_dir": str(root / "renders")})
        log = server.log()
    assert recorder.authorizations == [], recorder.paths  # nothing reached the caller's endpoint at all
    assert SERVER_KEY not in log
    assert list(outside.iterdir()) == []
    assert [p.suffix for p in (root / "renders").rglob("*") if p.is_file()] == [".png"]
    assert len(policy.successful_bodies()) == len(PARIS_SCRIPT)
