"""Threat-model row "policy endpoint / web content / judges / render service": every HTTP
client the project owns is under one outbound policy (``net.limits``): a total deadline per
request and a cap on the decoded reply.

A hostile server on 127.0.0.1 either trickles its reply (one byte every 0.3 s: a per-read
timeout never fires) or answers with a gzip bomb (1 MiB on the wire, 1 GiB decoded). Each
client must give up at its deadline or at the cap, with a message naming the endpoint and
the limit, long before the bomb could be decoded (decoding 1 GiB takes several seconds and
1 GiB of memory).
"""

from __future__ import annotations

import asyncio
import struct
import time
import tracemalloc
import zlib
from functools import lru_cache
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from genevolve_graph import AgentContext
from genevolve_graph.core.state import Program
from genevolve_graph.evaluation.judge_client import JudgeClient, JudgeError
from genevolve_graph.generators.service_client import ServiceConfig, ServiceRenderer
from genevolve_graph.net.errors import BackendUnavailable
from genevolve_graph.net.limits import OutboundLimits, ReplyTooLarge, read_body
from genevolve_graph.net.netguard import NetPolicy
from genevolve_graph.net.webclient import RetrySettings, api_client, call_json
from genevolve_graph.policies.base import PolicyError
from genevolve_graph.policies.openai_chat import OpenAIChatPolicy
from genevolve_graph.testing.server_thread import ServerThread
from genevolve_graph.tools.download import DownloadLimits, DownloadRejected, ImageDownloader
from langchain_core.messages import HumanMessage

GIB = 1 << 30
TRICKLE_GAP = 0.3


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """About 1 MiB of gzip that decodes to 1 GiB of zeros. A full flush resets the deflate
    state, so each 16 MiB block of zeros compresses to the same bytes: compress two, repeat
    the second (built in well under a second, where compressing 1 GiB takes seconds)."""
    block = bytes(1 << 24)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(64):
        crc = zlib.crc32(block, crc)
    return first + again * 63 + b"\x03\x00" + struct.pack("<II", crc, (64 << 24) & 0xFFFFFFFF)


async def _trickle() -> object:
    yield b"{"
    while True:  # never finishes: one byte, then a pause shorter than any read timeout
        await asyncio.sleep(TRICKLE_GAP)
        yield b" "


async def hostile(request: Request) -> Response:
    mode = request.path_params["mode"]
    await request.body()
    if mode == "trickle":
        return StreamingResponse(_trickle(), media_type="application/json")
    return Response(gzip_bomb(), media_type="application/json", headers={"Content-Encoding": "gzip"})


async def hostile_image(request: Request) -> Response:
    if request.path_params["mode"] == "trickle":
        return StreamingResponse(_trickle(), media_type="image/png")
    return Response(gzip_bomb(), media_type="image/png", headers={"Content-Encoding": "gzip"})


APP = Starlette(routes=[
    Route("/{mode}/v1/chat/completions", hostile, methods=["POST"]),
    Route("/{mode}/search", hostile, methods=["POST"]),
    Route("/{mode}/generate", hostile, methods=["POST"]),
    Route("/{mode}/image.png", hostile_image, methods=["GET"]),
])


@pytest.fixture(scope="module")
def server():
    gzip_bomb()
    with ServerThread(APP) as url:
        yield url


async def bounded(coro, seconds: float = 8.0):
    """Run ``coro``; before the outbound policy these calls never ended (trickle) or took
    1 GiB and many seconds (bomb), so the test gives up instead of hanging."""
    started = time.monotonic()
    result = await asyncio.wait_for(coro, seconds)
    return result, time.monotonic() - started


def _ctx(base_url: str, tmp_path: Path, **changes) -> AgentContext:
    return AgentContext(policy="openai", base_url=base_url, model="m", renderer="none", output_dir=str(tmp_path),
                        request_timeout=1.0, max_retries=0, **changes)


# -- the chat clients -------------------------------------------------------------------------


@pytest.mark.parametrize("chat_client", ["lean", "sdk"])
async def test_chat_reply_that_trickles_is_cut_at_the_total_deadline(server, tmp_path, chat_client):
    policy = OpenAIChatPolicy(base_url=f"{server}/trickle/v1", model="m", timeout=1.0, max_retries=0, chat_client=chat_client)
    with pytest.raises(PolicyError) as caught:
        await bounded(policy.respond([HumanMessage("hi")], _ctx(policy.chat.openai_api_base, tmp_path)))
    message = str(caught.value)
    assert message == f"the policy endpoint {server}/trickle/v1 timed out: no complete reply within the total deadline of 1 s"
    assert "\n" not in message


@pytest.mark.parametrize("chat_client", ["lean", "sdk"])
async def test_chat_gzip_bomb_is_refused_at_the_decoded_cap(server, tmp_path, chat_client):
    policy = OpenAIChatPolicy(base_url=f"{server}/bomb/v1", model="m", timeout=5.0, max_retries=2, chat_client=chat_client,
                              max_reply_bytes=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(PolicyError) as caught:
            await bounded(policy.respond([HumanMessage("hi")], _ctx(policy.chat.openai_api_base, tmp_path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "reply cap of 1048576 bytes (decoded)" in message and f"{server}/bomb/v1/chat/completions" in message
    assert peak < 64 << 20, f"decoding held {peak} bytes"


async def test_default_cap_holds_without_configuration(server, tmp_path):
    """No cap given: the default (64 MiB) still stops a 1 GiB bomb, and the oversized reply
    is not retried (it would come back the same)."""
    policy = OpenAIChatPolicy(base_url=f"{server}/bomb/v1", model="m", timeout=5.0, max_retries=3)
    with pytest.raises(PolicyError, match="reply cap of 67108864 bytes"):
        await bounded(policy.respond([HumanMessage("hi")], _ctx(policy.chat.openai_api_base, tmp_path)))


async def test_reply_cap_comes_from_the_operators_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("GENEVOLVE_MAX_REPLY_BYTES", "4096")
    policy = OpenAIChatPolicy(base_url=f"{server}/bomb/v1", model="m", timeout=5.0, max_retries=0)
    with pytest.raises(PolicyError, match="reply cap of 4096 bytes"):
        await bounded(policy.respond([HumanMessage("hi")], _ctx(policy.chat.openai_api_base, tmp_path)))


# -- judges -----------------------------------------------------------------------------------


async def test_judge_reply_that_trickles_is_cut_at_its_timeout(server):
    judge = JudgeClient(f"{server}/trickle/v1", "judge-model", timeout=1.0, max_retries=0)
    with pytest.raises(JudgeError, match=r"total deadline of 1 s") as caught:
        await bounded(judge.complete([{"role": "user", "content": "score"}]))
    assert f"{server}/trickle/v1/chat/completions" in str(caught.value)


async def test_judge_gzip_bomb_is_refused_and_not_retried(server):
    judge = JudgeClient(f"{server}/bomb/v1", "judge-model", timeout=5.0, max_retries=3, max_reply_bytes=1 << 20)
    with pytest.raises(JudgeError, match=r"judge .judge-model.: the reply from .* exceeds the outbound reply cap of 1048576 bytes"):
        await bounded(judge.complete([{"role": "user", "content": "score"}]))


# -- search APIs --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, expected", [("trickle", "total deadline of 1 s"), ("bomb", "outbound reply cap of 1048576 bytes")])
async def test_search_api_is_under_the_outbound_policy(server, mode, expected):
    async def search():
        async with api_client(1.0) as client:
            return await call_json(client, "POST", f"{server}/{mode}/search", service="serper", retry=RetrySettings(retries=0),
                                   limits=OutboundLimits(max_reply_bytes=1 << 20, total_deadline_s=1.0), json={"q": "x"})

    with pytest.raises(BackendUnavailable, match=expected):
        await bounded(search())


async def test_search_api_default_deadline_is_its_timeout(server):
    async def search():
        async with api_client(1.0) as client:
            return await call_json(client, "POST", f"{server}/trickle/search", service="serper", retry=RetrySettings(retries=0),
                                   json={"q": "x"})

    with pytest.raises(BackendUnavailable, match="total deadline of 1 s"):
        await bounded(search())


# -- downloads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, expected", [("trickle", "timed out after 1s"), ("bomb", "body exceeds the 1048576-byte cap")])
async def test_download_is_under_the_outbound_policy(server, tmp_path, mode, expected):
    host = server.removeprefix("http://")
    policy = NetPolicy.build([host], ports=[int(host.rsplit(":", 1)[1])])
    limits = DownloadLimits(max_bytes=1 << 20, max_pixels=10_000_000, total_timeout=1.0, connect_timeout=1.0,
                            read_timeout=1.0, max_redirects=0)
    downloader = ImageDownloader(tmp_path, policy, limits, 2)
    with pytest.raises(DownloadRejected, match=expected):
        await bounded(downloader.fetch(f"{server}/{mode}/image.png"))


# -- the render-service client ------------------------------------------------------------------


@pytest.mark.parametrize("mode, expected", [("trickle", "{url}: no answer within the total deadline of 1 s"),
                                            ("bomb", "the reply from {url}/generate exceeds the outbound reply cap of 1048576 bytes")])
async def test_render_service_client_is_under_the_outbound_policy(server, tmp_path, mode, expected):
    url = f"{server}/{mode}"
    renderer = ServiceRenderer(ServiceConfig(urls=(url,), timeout=1.0, retries=0, max_reply_bytes=1 << 20))
    result, _ = await bounded(renderer.render(Program(gen_prompt="a fox"), tmp_path / "out.png"))
    assert not result.success
    assert expected.format(url=url) in result.error
    assert not (tmp_path / "out.png").exists()


# -- the reader itself ------------------------------------------------------------------------------


async def test_reader_decodes_a_normal_gzip_reply_whole():
    payload = b'{"ok": true, "pad": "' + b"x" * 300_000 + b'"}'
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    wire = compressor.compress(payload) + compressor.flush()

    async def chunks():
        for at in range(0, len(wire), 1000):
            yield wire[at:at + 1000]

    body = await read_body(chunks(), limits=OutboundLimits(max_reply_bytes=len(payload), total_deadline_s=5),
                           endpoint="http://127.0.0.1:1/x", content_encoding="gzip")
    assert body == payload
    with pytest.raises(ReplyTooLarge, match=r"from http://user:\*\*\*@127\.0\.0\.1:1/x exceeds the outbound reply cap of 1000 bytes"):
        await read_body(chunks(), limits=OutboundLimits(max_reply_bytes=1000, total_deadline_s=5),
                        endpoint="http://user:secret@127.0.0.1:1/x", content_encoding="gzip")
