"""A scripted OpenAI-compatible judge server on 127.0.0.1 for the evaluation tests.

Real HTTP (FastAPI under uvicorn in a thread on a free port, via the project's
``ServerThread``). Each request is matched to a script by a marker string found in its text
content; the script's replies are served in order, the last one repeating. A reply is judge
text (well-formed, fenced, malformed: the test decides) or an HTTP error status (429 with
``Retry-After``, 500, 401...). Every request is recorded with its arrival time, so tests
can check the rate limiter from the server's side and inspect exactly what the client sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from genevolve_graph.testing.server_thread import ServerThread


@dataclass
class Reply:
    """One scripted answer: judge text with status 200, or an error status."""

    text: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def ok(text: str) -> Reply:
    return Reply(text=text)


def error(status: int, **headers: str) -> Reply:
    return Reply(status=status, headers={k.replace("_", "-"): v for k, v in headers.items()})


@dataclass
class Recorded:
    """A request as the server saw it."""

    at: float
    body: dict[str, Any]
    text: str
    marker: str | None

    def images(self) -> list[str]:
        """The data URLs of the image parts, in order."""
        urls = []
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, list):
                urls += [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]
        return urls


def _text_of(body: dict[str, Any]) -> str:
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if p.get("type") == "text"]
    return "\n".join(parts)


class ScriptedJudge:
    """The server and its script."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: list[tuple[str, list[Reply]]] = []
        self._default: list[Reply] = [Reply(status=500, text="no script matched")]
        self.requests: list[Recorded] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self._thread: ServerThread | None = None

    # -- script
    def on(self, marker: str, *replies: Reply) -> None:
        """Requests whose text contains ``marker`` get ``replies`` in order (the last repeats);
        a second call for the same marker replaces its script."""
        with self._lock:
            self._scripts = [(m, r) for m, r in self._scripts if m != marker]
            self._scripts.append((marker, list(replies)))

    def default(self, *replies: Reply) -> None:
        """Replies for requests no marker matches."""
        with self._lock:
            self._default = list(replies)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._default = [Reply(status=500, text="no script matched")]
            self.requests.clear()

    def requests_for(self, marker: str) -> list[Recorded]:
        return [r for r in self.requests if r.marker == marker]

    def _next(self, text: str) -> tuple[str | None, Reply]:
        with self._lock:
            for marker, replies in self._scripts:
                if marker in text:
                    return marker, replies.pop(0) if len(replies) > 1 else replies[0]
            return None, self._default.pop(0) if len(self._default) > 1 else self._default[0]

    async def _chat(self, request: Request) -> JSONResponse:
        at = time.monotonic()
        body = await request.json()
        text = _text_of(body)
        marker, reply = self._next(text)
        with self._lock:
            self.requests.append(Recorded(at=at, body=body, text=text, marker=marker))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return JSONResponse(
                {"error": {"message": reply.text or f"scripted {reply.status}", "type": "scripted", "code": reply.status}},
                status_code=reply.status,
                headers=reply.headers,
            )
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    # -- lifecycle
    @property
    def base_url(self) -> str:
        assert self._thread is not None, "start() the server first"
        return f"{self._thread.url}/v1"

    def start(self) -> ScriptedJudge:
        self._thread = ServerThread(self.app).start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
