"""The lean chat model's aiohttp exchange on real HTTP servers: what httpx would accept it
accepts (compressed replies), it goes through the environment's proxy, it fails the way
the SDK fails, and its sessions close with their event loop."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import subprocess
import sys
import textwrap

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from genevolve_graph.policies.lean_openai import LeanChatOpenAI, ainvoke_chat
from genevolve_graph.policies.openai_chat import OpenAIChatPolicy
from genevolve_graph.net.reply_check import MalformedReply
from genevolve_graph.testing.server_thread import ServerThread

CONVERSATION = [SystemMessage(content="You plan images."), HumanMessage(content="a fox")]
COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "<answer>{}</answer>"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def lean(base_url: str, **kwargs) -> LeanChatOpenAI:
    return OpenAIChatPolicy(base_url=base_url, model="m", timeout=kwargs.pop("timeout", 5.0), max_retries=0).chat


def app(handler) -> Starlette:
    return Starlette(routes=[Route("/v1/chat/completions", handler, methods=["POST"])])


def test_the_policy_model_uses_aiohttp_unless_the_caller_brings_a_client():
    import httpx

    assert OpenAIChatPolicy(base_url="http://127.0.0.1:9/v1", model="m").chat.lean_transport == "aiohttp"
    own = OpenAIChatPolicy(base_url="http://127.0.0.1:9/v1", model="m", http_async_client=httpx.AsyncClient())
    assert own.chat.lean_transport == "httpx"  # the caller's client, transport and hooks, as given
    assert OpenAIChatPolicy(base_url="http://127.0.0.1:9/v1", model="m", chat_client="sdk").chat.__class__ is not LeanChatOpenAI


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compressed_reply_is_decoded_as_httpx_decodes_it(coding):
    import zlib

    raw = json.dumps(COMPLETION).encode()
    body = gzip.compress(raw) if coding == "gzip" else zlib.compress(raw)

    async def chat(request: Request) -> Response:
        return Response(body, headers={"content-type": "application/json", "content-encoding": coding})

    with ServerThread(app(chat)) as url:
        reply = await ainvoke_chat(lean(url + "/v1"), CONVERSATION)
    assert reply.content == "<answer>{}</answer>" and reply.usage_metadata["total_tokens"] == 5


async def test_a_reply_that_does_not_decode_is_a_connection_fault_naming_the_coding():
    async def chat(request: Request) -> Response:
        return Response(b"not gzip at all", headers={"content-type": "application/json", "content-encoding": "gzip"})

    with ServerThread(app(chat)) as url, pytest.raises(openai.APIConnectionError) as caught:
        await ainvoke_chat(lean(url + "/v1"), CONVERSATION)
    assert "gzip" in str(caught.value.__cause__)


async def test_requests_go_through_the_environment_proxy(monkeypatch):
    """The proxy receives the absolute URI of the (unresolvable) endpoint and answers for it."""
    seen: list[str] = []

    async def chat(request: Request) -> Response:
        seen.append(str(request.url))
        return Response(json.dumps(COMPLETION), media_type="application/json")

    with ServerThread(app(chat)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        reply = await ainvoke_chat(lean("http://policy.invalid/v1"), CONVERSATION)
        assert reply.content == "<answer>{}</answer>"
        assert seen == ["http://policy.invalid/v1/chat/completions"]
        monkeypatch.setenv("NO_PROXY", "policy.invalid")
        with pytest.raises(openai.APIConnectionError):  # bypassed: the name does not resolve
            await ainvoke_chat(lean("http://policy.invalid/v1"), CONVERSATION)
    assert len(seen) == 1


async def test_failures_are_the_sdks_exceptions():
    async def slow(request: Request) -> Response:
        await asyncio.sleep(2)
        return Response(json.dumps(COMPLETION), media_type="application/json")

    async def busy(request: Request) -> Response:
        return Response(json.dumps({"error": {"message": "slow down"}}), status_code=429, media_type="application/json")

    async def page(request: Request) -> Response:
        return Response("<html>proxy error</html>", media_type="text/html")

    with ServerThread(app(slow)) as url, pytest.raises(openai.APITimeoutError):
        await ainvoke_chat(OpenAIChatPolicy(base_url=url + "/v1", model="m", timeout=0.3).chat, CONVERSATION)
    with ServerThread(app(busy)) as url, pytest.raises(openai.RateLimitError) as caught:
        await ainvoke_chat(lean(url + "/v1"), CONVERSATION)
    assert caught.value.status_code == 429 and "slow down" in caught.value.message
    with ServerThread(app(page)) as url, pytest.raises(MalformedReply) as malformed:
        await ainvoke_chat(lean(url + "/v1"), CONVERSATION)
    assert f"the policy endpoint {url}/v1/chat/completions sent a malformed reply" in str(malformed.value)
    assert "is not JSON" in str(malformed.value)
    with pytest.raises(openai.APIConnectionError):
        await ainvoke_chat(lean("http://127.0.0.1:9/v1"), CONVERSATION)


def test_sessions_close_with_their_event_loop_without_warnings(tmp_path):
    """Two loops, one session each; nothing reports an unclosed session or connector,
    also under ``-X dev`` (which shows every ResourceWarning)."""
    script = tmp_path / "loops.py"
    script.write_text(textwrap.dedent('''
        import asyncio, gc, json, sys
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route
        from langchain_core.messages import HumanMessage
        from genevolve_graph.policies.openai_chat import OpenAIChatPolicy
        from genevolve_graph.policies.lean_openai import ainvoke_chat
        from genevolve_graph.testing.server_thread import ServerThread
        from genevolve_graph.util import event_loop

        COMPLETION = %s

        async def chat(request):
            return Response(json.dumps(COMPLETION), media_type="application/json")

        with ServerThread(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])) as url:
            model = OpenAIChatPolicy(base_url=url + "/v1", model="m").chat
            asyncio.run(ainvoke_chat(model, [HumanMessage(content="a")]))
            event_loop.run(ainvoke_chat(model, [HumanMessage(content="b")]))
            async def explicit():
                await ainvoke_chat(model, [HumanMessage(content="c")])
                await model.aclose()
            asyncio.run(explicit())
            del model
            gc.collect()
        print("done")
    ''' % json.dumps(COMPLETION)))
    done = subprocess.run([sys.executable, "-X", "dev", "-W", "always::ResourceWarning", str(script)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "Unclosed" not in done.stderr and "ResourceWarning" not in done.stderr, done.stderr


async def test_a_collected_model_closes_its_session_on_the_running_loop():
    async def chat(request: Request) -> Response:
        return Response(json.dumps(COMPLETION), media_type="application/json")

    with ServerThread(app(chat)) as url:
        model = lean(url + "/v1")
        await ainvoke_chat(model, CONVERSATION)
        session = model._lean_aiohttp._sessions[asyncio.get_running_loop()][1]
        del model
        gc.collect()
        for _ in range(50):
            if session.closed:
                break
            await asyncio.sleep(0.01)
    assert session.closed
