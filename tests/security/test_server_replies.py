"""A LangGraph server's replies are data (``batch --server``, ``render --server``): bounded.

A hostile or broken server answers a thread's state with hundreds of megabytes, compresses
a small reply into a large one, or keeps a ``runs.join`` open forever. The client
(``net.langgraph_api``) caps every reply's size and each join's time, and says which server
call broke which limit. Real HTTP against a loopback server the test starts.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from genevolve_graph.testing.server_thread import ServerThread

pytest.importorskip("langgraph_sdk")

BIG = 3 * 1024 * 1024


def hostile_server() -> Starlette:
    async def join(request: Request) -> StreamingResponse:
        async def forever():
            while True:
                yield b" "
                await asyncio.sleep(0.05)
        return StreamingResponse(forever(), media_type="application/json")

    async def state(request: Request) -> Response:
        body = json.dumps({"values": {"render": {"error": "x" * BIG}}, "next": []}).encode()
        return Response(body, media_type="application/json")

    async def streamed_state(request: Request) -> StreamingResponse:
        async def chunks():
            yield b'{"values": {"junk": "'
            for _ in range(BIG // 65536 + 2):
                yield b"x" * 65536
            yield b'"}}'
        return StreamingResponse(chunks(), media_type="application/json")  # no Content-Length: counted as it comes

    async def compressed(request: Request) -> Response:
        body = gzip.compress(json.dumps({"values": {"junk": "x" * BIG}}).encode())
        return Response(body, media_type="application/json", headers={"Content-Encoding": "gzip"})

    return Starlette(routes=[Route("/threads/{tid}/runs/{rid}/join", join), Route("/threads/big/state", state),
                             Route("/threads/streamed/state", streamed_state), Route("/threads/gzip/state", compressed)])


def test_a_never_ending_join_and_oversized_states_are_bounded():
    from genevolve_graph.batch.server import ServerExecutor
    from genevolve_graph.net.langgraph_api import ServerReplyError, capped_client
    from genevolve_graph.net.limits import ReplyTooLarge

    async def main(url: str) -> None:
        client = capped_client(url, max_reply_bytes=1024 * 1024)
        executor = ServerExecutor(url, concurrency=1, join_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ServerReplyError, match=r"server run r-1 of thread t-1 did not finish within 1 s \(join_timeout\)"):
            await executor._join(client, "t-1", "r-1")
        assert time.monotonic() - started < 5
        for thread in ("big", "streamed", "gzip"):  # announced, counted as it streams, decoded as it streams
            with pytest.raises(ReplyTooLarge, match=r"exceeds the outbound reply cap of 1048576 bytes \(decoded\)") as caught:
                await client.threads.get_state(thread)
            assert f"/threads/{thread}/state" in str(caught.value)

    with ServerThread(hostile_server()) as url:
        asyncio.run(main(url))


def test_the_executor_uses_the_capped_client_with_generous_defaults():
    from genevolve_graph.batch.server import ServerExecutor
    from genevolve_graph.net.langgraph_api import DEFAULT_JOIN_TIMEOUT, DEFAULT_MAX_REPLY_BYTES

    executor = ServerExecutor("http://127.0.0.1:9", concurrency=1)
    assert executor.join_timeout == DEFAULT_JOIN_TIMEOUT >= 600 and executor.max_reply_bytes == DEFAULT_MAX_REPLY_BYTES >= 16 * 1024 * 1024
