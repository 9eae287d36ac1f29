"""A scripted OpenAI-compatible chat server for tests and benchmarks.

It answers ``POST /v1/chat/completions`` from a script instead of a model, records every
request (body, arrival and reply times) and the maximum number of requests in flight. The
reply for a request is chosen statelessly: the script entry whose key occurs in the first
user message (the image request), at the index given by the number of assistant messages
already in the conversation, so concurrent trajectories each get their own script.

A reply is a string (the assistant's content), a dict ``{"content", "tool_calls"}`` for
native tool calling, a dict ``{"status": 429}`` for an HTTP error, or a dict
``{"raw": b"...", "content_type": "..."}`` for a 200 reply with exactly these bytes (garbage
from a misbehaving endpoint or proxy; no content type when it is ``None``). ``flaky`` lists
statuses to return on the first attempts of every turn before the real reply (429 then
success); ``fail_when`` makes requests containing a substring fail with 500 every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import httpx

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from genevolve_graph.testing.server_thread import ServedApp, ServerThread

Reply = str | dict[str, Any]
Script = dict[str, list[Reply]] | list[Reply] | Callable[[dict[str, Any]], Reply]


@dataclass
class RecordedRequest:
    body: dict[str, Any]
    arrived: float
    answered: float = 0.0
    status: int = 200
    authorization: bool = False
    raw: bytes = b""
    """The request body exactly as it arrived (for byte-level comparisons of clients)."""
    headers: dict[str, str] = field(default_factory=dict)
    peer: tuple[str, int] | None = None
    """The client's address and port: requests from one port came over one kept-alive connection."""


@dataclass
class ScriptedChatServer(ServedApp):
    script: Script
    latency: float = 0.0
    flaky: list[int] = field(default_factory=list)
    fail_when: str | None = None
    model: str = "scripted-genevolve"

    def __post_init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._attempts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

    # ---------------------------------------------------------------- script lookup
    @staticmethod
    def conversation_key(body: dict[str, Any]) -> str:
        for message in body.get("messages", []):
            if message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else json.dumps(content)
        return ""

    @staticmethod
    def turn(body: dict[str, Any]) -> int:
        return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")

    def reply_for(self, body: dict[str, Any]) -> Reply:
        if callable(self.script):
            return self.script(body)
        key, turn = self.conversation_key(body), self.turn(body)
        if isinstance(self.script, list):
            replies = self.script
        elif key in self.script:  # the longest key a request can contain is the request itself
            replies = self.script[key]
        else:  # a scan of every key: fine for a test's script, not for a benchmark's 100,000 rows
            matches = [k for k in self.script if k in key]
            if not matches:
                return {"status": 404, "message": f"no script for request {key[:80]!r}"}
            replies = self.script[max(matches, key=len)]
        if turn >= len(replies):
            return {"status": 500, "message": f"script exhausted at turn {turn}"}
        return replies[turn]

    # ---------------------------------------------------------------- handlers
    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        record = RecordedRequest(body=body, arrived=time.monotonic(), authorization="authorization" in request.headers,
                                 raw=raw, headers=dict(request.headers),
                                 peer=(request.client.host, request.client.port) if request.client else None)
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            key, turn = self.conversation_key(body), self.turn(body)
            with self._lock:
                attempt = self._attempts.get((key, turn), 0)
                self._attempts[(key, turn)] = attempt + 1
            if self.fail_when and self.fail_when in key:
                reply: Reply = {"status": 500, "message": "scripted failure"}
            elif attempt < len(self.flaky):
                reply = {"status": self.flaky[attempt], "message": "scripted transient failure"}
            else:
                reply = self.reply_for(body)
            response = self._respond(reply, record)
            if body.get("stream") and record.status == 200:
                return _as_event_stream(json.loads(response.body), bool((body.get("stream_options") or {}).get("include_usage")))
            return response
        finally:
            with self._lock:
                self.in_flight -= 1
            record.answered = time.monotonic()

    def _respond(self, reply: Reply, record: RecordedRequest) -> Response:
        if isinstance(reply, dict) and "raw" in reply:
            raw = Response(bytes(reply["raw"]), status_code=200)
            if reply.get("content_type") is not None:
                raw.headers["content-type"] = reply["content_type"]
            return raw
        if isinstance(reply, dict) and "status" in reply:
            record.status = int(reply["status"])
            headers = {"retry-after": "0"} if record.status == 429 else None
            return JSONResponse({"error": {"message": reply.get("message", "error"), "type": "scripted"}}, status_code=record.status, headers=headers)
        if isinstance(reply, str):
            message: dict[str, Any] = {"role": "assistant", "content": reply}
        else:
            message = {"role": "assistant", "content": reply.get("content")}
            if reply.get("tool_calls"):
                message["tool_calls"] = [
                    {"id": c.get("id") or f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                     "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
                    for c in reply["tool_calls"]
                ]
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()), "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        })

    # ---------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def successful_bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.status == 200]


def _as_event_stream(completion: dict[str, Any], include_usage: bool) -> StreamingResponse:
    """A completion as OpenAI's server-sent chunks: the role, the content in a few pieces,
    each tool call, the finish reason, then (when asked) a usage chunk and ``[DONE]``."""
    message, choice = completion["choices"][0]["message"], completion["choices"][0]
    head = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return "data: " + json.dumps({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    content = message.get("content") or ""
    step = max(1, len(content) // 3)
    events += [chunk({"content": content[i : i + step]}) for i in range(0, len(content), step)]
    for index, call in enumerate(message.get("tool_calls") or []):
        events.append(chunk({"tool_calls": [{"index": index, **call}]}))
    events.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        events.append("data: " + json.dumps({**head, "choices": [], "usage": completion["usage"]}) + "\n\n")
    events.append("data: [DONE]\n\n")
    return StreamingResponse(iter(events), media_type="text/event-stream")


def _serve_in_child(script: Script, latency: float, ports: Any) -> None:
    server = ScriptedChatServer(script, latency=latency)
    thread = ServerThread(server.app)
    ports.put(thread.port)
    thread.server.run(sockets=[thread.sock])


@contextlib.contextmanager
def scripted_server_process(script: Script, latency: float = 0.0) -> Iterator[str]:
    """The scripted server in a separate process (for benchmarks: its CPU time then does not
    compete with the client's for one interpreter). Yields the ``/v1`` base URL."""
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    process = context.Process(target=_serve_in_child, args=(script, latency, ports), daemon=True)
    process.start()
    try:
        port = ports.get(timeout=60)
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/models", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the scripted server process did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.join(timeout=10)
