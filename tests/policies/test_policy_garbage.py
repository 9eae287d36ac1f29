"""A policy endpoint that answers 200 with garbage: the trajectory ends with termination
``error`` and a message naming the endpoint (credentials removed) and what was wrong with the
reply. Real HTTP round trips against the scripted OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from genevolve_graph import AgentContext, build_graph
from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.net.reply_check import MalformedReply, check_completion, redact_endpoint
from genevolve_graph.agent.runner import run_with_saver

from tests.scripts import answer, tool

COMPLETION = {"id": "x", "object": "chat.completion",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": answer("a red fox")}, "finish_reason": "stop"}]}

GARBAGE = {
    "binary bytes": ({"raw": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00\x01", "content_type": "application/octet-stream"},
                     "is not utf-8 text"),
    "binary labelled JSON": ({"raw": b"\xff\xd8\xff\xe0garbage", "content_type": "application/json"}, "is not utf-8 text"),
    "an HTML error page": ({"raw": b"<html><body>502 Bad Gateway</body></html>", "content_type": "text/html"}, "is not JSON"),
    "plain text": ({"raw": b"upstream connect error", "content_type": "application/json"}, "is not JSON"),
    "an empty body": ({"raw": b"", "content_type": "application/json"}, "the reply body is empty"),
    "JSON without choices": ({"raw": b'{"id": "x", "object": "chat.completion"}', "content_type": "application/json"},
                             "has no 'choices'"),
    "empty choices": ({"raw": b'{"id": "x", "choices": []}', "content_type": "application/json"}, "empty 'choices'"),
    "a choice without a message": ({"raw": b'{"id": "x", "choices": [{"index": 0}]}', "content_type": "application/json"},
                                   "no 'message' object"),
    "a JSON array": ({"raw": b"[1, 2]", "content_type": "application/json"}, "is a JSON list"),
    "numeric content": ({"raw": b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": 5}}]}',
                         "content_type": "application/json"}, "'content' is a JSON int"),
    "an error object with status 200": ({"raw": b'{"error": {"message": "model is loading"}}', "content_type": "application/json"},
                                        "error object instead of a completion: model is loading"),
    # UTF-16 without a charset: the SDK guesses the encoding from the first bytes; a torn
    # body then fails inside it with "'utf-16-be' codec can't decode".
    "torn UTF-16 without charset": ({"raw": json.dumps(COMPLETION).encode("utf-16-be")[:-1], "content_type": None},
                                    "is not utf-16-be text"),
}


def ctx_for(server, tmp_path, **overrides) -> AgentContext:
    base = dict(policy="openai", base_url=server.base_url, model="genevolve-8b", output_dir=str(tmp_path / "out"),
                renderer="none", retry_initial_delay=0.01, request_timeout=5.0, max_retries=2)
    base.update(overrides)
    return AgentContext(**base)


@pytest.mark.parametrize("case", list(GARBAGE))
async def test_garbage_reply_ends_the_trajectory_with_a_clear_error(scripted_server, tmp_path, case):
    reply, problem = GARBAGE[case]
    server = scripted_server({"fox": [reply]})
    async with open_checkpointer("memory") as saver:
        result = await run_with_saver("a fox", ctx_for(server, tmp_path), saver, thread_id="t-1", row_id="row-1")
    assert result.termination == "error"
    assert result.error.startswith(f"the policy endpoint {server.base_url}/chat/completions sent a malformed reply: ")
    assert problem in result.error
    assert "\n" not in result.error
    assert len(server.requests) == 1  # a 2xx reply that is not a completion is not retried


async def test_the_endpoint_is_named_without_its_credentials(scripted_server, tmp_path):
    server = scripted_server({"fox": [{"raw": b"<html></html>", "content_type": "text/html"}]})
    base_url = server.base_url.replace("http://", "http://alice:s3cret@")
    async with open_checkpointer("memory") as saver:
        result = await run_with_saver("a fox", ctx_for(server, tmp_path, base_url=base_url), saver, thread_id="t-1")
    assert result.termination == "error" and "is not JSON" in result.error
    assert "s3cret" not in result.error and "alice" not in result.error
    assert server.url.replace("http://", "") in result.error


async def test_http_errors_name_the_endpoint_too(scripted_server, tmp_path):
    server = scripted_server({"fox": [{"status": 404, "message": "no such model"}]})
    async with open_checkpointer("memory") as saver:
        result = await run_with_saver("a fox", ctx_for(server, tmp_path), saver, thread_id="t-1")
    assert result.error.startswith(f"HTTP 404 from the policy endpoint {server.base_url}: ")


async def test_garbage_after_tool_turns_keeps_the_partial_trajectory(scripted_server, tmp_path):
    server = scripted_server({"fox": [tool("search", queries=["red fox"]), {"raw": b'{"choices": []}', "content_type": "application/json"}]})
    url = f"sqlite:///{tmp_path / 'trace.sqlite'}"
    async with open_checkpointer(url) as saver:
        result = await run_with_saver("a fox", ctx_for(server, tmp_path), saver, thread_id="t-1")
    assert result.termination == "error" and "empty 'choices'" in result.error
    async with open_checkpointer(url) as saver:
        snapshot = await build_graph(saver).aget_state({"configurable": {"thread_id": "t-1"}})
    assert isinstance(snapshot.values["messages"][2], AIMessage) and isinstance(snapshot.values["messages"][3], ToolMessage)
    assert snapshot.values["termination"] == "error" and "empty 'choices'" in snapshot.values["error"]


async def test_well_formed_utf16_and_ordinary_replies_still_work(scripted_server, tmp_path):
    """The check refuses garbage only: UTF-16 JSON the SDK can read, and ordinary replies, pass."""
    server = scripted_server({"fox": [{"raw": json.dumps(COMPLETION).encode("utf-16"), "content_type": "application/json"}],
                              "owl": [answer("a snowy owl")]})
    for request in ("a fox", "an owl"):
        async with open_checkpointer("memory") as saver:
            result = await run_with_saver(request, ctx_for(server, tmp_path), saver, thread_id="t-" + request)
        assert result.termination == "answer", result.error


def test_check_completion_accepts_a_completion_and_names_charset_problems():
    check_completion(json.dumps(COMPLETION).encode(), "application/json")
    with pytest.raises(MalformedReply, match="unknown charset 'klingon'"):
        check_completion(b"{}", "application/json; charset=klingon", "klingon")
    with pytest.raises(MalformedReply, match="is not ascii text"):
        check_completion("{\"choices\": \"é\"}".encode(), "application/json; charset=ascii", "ascii")


def test_redact_endpoint_drops_userinfo_query_and_fragment():
    assert redact_endpoint("https://u:p@example.com:8443/v1/chat/completions?api-key=k#x") == "https://example.com:8443/v1/chat/completions"
    assert redact_endpoint("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
