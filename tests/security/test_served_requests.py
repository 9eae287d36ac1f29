"""Studio / dev-server callers, part 1: who may send a state-changing request at all.

A web page on any site can make a browser send a "simple" request (``text/plain`` or a form
post) to a loopback port without a CORS preflight; the LangGraph API server reads such a body
as JSON. The request guard (``serving/request_guard.py``, ``http.app`` in langgraph.json)
refuses a foreign ``Origin`` (403) and a non-JSON body (415) before anything runs. Studio's
origin, loopback pages and same-host tools without an ``Origin`` keep working.
"""

from __future__ import annotations

import json

import pytest

httpx = pytest.importorskip("httpx")

EVIL = "https://evil.example"
STUDIO_ORIGIN = "https://smith.langchain.com"
PROGRAM = {"gen_prompt": "A red fox in the snow.", "reference_images": []}


def hostile_run(output_name: str = "README.md") -> dict:
    """What the reported page posted: the render graph asked to write over the project's README."""
    return {"assistant_id": "genevolve_render", "input": {"program": PROGRAM},
            "context": {"renderer": "preview", "output_dir": ".", "options": {"output_name": output_name}}}


def runs_on_server(url: str) -> int:
    threads = httpx.post(f"{url}/threads/search", json={"limit": 1000}, timeout=10).json()
    return sum(len(httpx.get(f"{url}/threads/{t['thread_id']}/runs", timeout=10).json()) for t in threads)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_simple_requests_from_a_foreign_page_run_nothing_and_write_nothing(served_project):
    url = served_project.url
    before, runs_before = served_project.snapshot(), runs_on_server(url)
    body = json.dumps(hostile_run())
    attempts = [
        ("text/plain from a foreign page", {"Origin": EVIL, "Content-Type": "text/plain;charset=UTF-8"}, body, 403),
        ("form post from a foreign page", {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"}, body, 403),
        ("multipart from a foreign page", {"Origin": EVIL, "Content-Type": "multipart/form-data; boundary=x"}, body, 403),
        ("JSON from a foreign page", {"Origin": EVIL, "Content-Type": "application/json"}, body, 403),
        ("a sandboxed page (Origin: null)", {"Origin": "null", "Content-Type": "text/plain"}, body, 403),
        ("a look-alike of Studio", {"Origin": "https://smith.langchain.com.evil.example", "Content-Type": "text/plain"}, body, 403),
        ("a look-alike of loopback", {"Origin": "http://localhost.evil.example", "Content-Type": "application/json"}, body, 403),
        ("text/plain without an Origin", {"Content-Type": "text/plain"}, body, 415),
        ("no Content-Type at all", {}, body, 415),
    ]
    for what, headers, content, status in attempts:
        for path in ("/runs/wait", "/runs/stream", "/threads"):
            reply = httpx.post(f"{url}{path}", headers=headers, content=content, timeout=30)
            assert reply.status_code == status, (what, path, reply.status_code, reply.text[:300])
            detail = reply.json()["detail"]
            assert ("Origin" in detail and "GENEVOLVE_ALLOWED_ORIGINS" in detail) if status == 403 else "application/json" in detail
    # other state-changing methods from a foreign page
    assert httpx.delete(f"{url}/threads/00000000-0000-0000-0000-000000000000", headers={"Origin": EVIL}, timeout=10).status_code == 403
    assert httpx.request("PATCH", f"{url}/threads/00000000-0000-0000-0000-000000000000", headers={"Origin": EVIL},
                         json={"metadata": {}}, timeout=10).status_code == 403
    assert runs_on_server(url) == runs_before  # nothing ran
    assert served_project.snapshot() == before  # nothing written, nothing replaced


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_studio_loopback_pages_and_same_host_tools_keep_working(served_project):
    langgraph_sdk = pytest.importorskip("langgraph_sdk")
    url = served_project.url
    run = {"assistant_id": "genevolve_render", "input": {"program": PROGRAM}, "context": {"renderer": "preview"}}
    for origin in (STUDIO_ORIGIN, "http://localhost:3000", "http://127.0.0.1:5173", "http://[::1]:8080", None):
        headers = {"Origin": origin} if origin else {}
        reply = httpx.post(f"{url}/runs/wait", headers=headers, json=run, timeout=60)
        assert reply.status_code == 200, (origin, reply.text[:300])
        assert reply.json()["render"]["success"] is True, reply.text[:300]
    # reads are not state changes: a preflight and a GET are left to CORS and the routes
    assert httpx.get(f"{url}/ok", headers={"Origin": EVIL}, timeout=10).status_code == 200
    preflight = httpx.options(f"{url}/runs/wait", headers={"Origin": STUDIO_ORIGIN, "Access-Control-Request-Method": "POST",
                                                          "Access-Control-Request-Headers": "content-type"}, timeout=10)
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == STUDIO_ORIGIN
    # langgraph-sdk (no Origin, JSON bodies): threads, runs, state, deletion
    client = langgraph_sdk.get_sync_client(url=url)
    thread = client.threads.create()
    done = client.runs.wait(thread["thread_id"], "genevolve_render", input={"program": PROGRAM}, context={"renderer": "preview"})
    assert done["render"]["success"] is True
    client.threads.delete(thread["thread_id"])


def test_the_origin_allow_list_is_the_cors_settings_plus_the_operator_s(monkeypatch):
    """Without server settings the defaults are langgraph.json's own; the server's CORS
    settings replace them; GENEVOLVE_ALLOWED_ORIGINS adds to them."""
    from pathlib import Path

    from genevolve_graph.serving.request_guard import LOOPBACK_ORIGIN_REGEX, OriginPolicy, is_json_type

    root = Path(__file__).resolve().parents[2]
    for name in ("langgraph.json", "langgraph.studio.json"):
        http = json.loads((root / name).read_text())["http"]
        assert http["app"] == "genevolve_graph.serving.request_guard:app", name
        assert http["cors"]["allow_origins"] == [STUDIO_ORIGIN] and http["cors"]["allow_origin_regex"] == LOOPBACK_ORIGIN_REGEX, name
    default = OriginPolicy.from_env({})
    assert default.allows(STUDIO_ORIGIN) and default.allows("http://localhost:2024") and default.allows("http://[::1]")
    assert not default.allows(EVIL) and not default.allows("null") and not default.allows("http://127.0.0.1.evil.example")
    served = OriginPolicy.from_env({"LANGGRAPH_HTTP": json.dumps({"cors": {"allow_origins": ["https://studio.internal"]}}),
                                    "GENEVOLVE_ALLOWED_ORIGINS": "https://ops.example, https://b.example"})
    assert served.allows("https://studio.internal") and served.allows("https://ops.example") and served.allows("https://b.example/")
    assert not served.allows(STUDIO_ORIGIN) and not served.allows("http://localhost:2024")
    assert is_json_type("application/json; charset=utf-8") and is_json_type("application/merge-patch+json")
    assert not is_json_type("text/plain") and not is_json_type("application/jsonp") and not is_json_type("")
