"""A scripted Gemini-compatible server for tests: ``POST /{version}/models/{model}:generateContent``.

It speaks the wire format the google-genai SDK uses against the Gemini API (camelCase
JSON, ``x-goog-api-key`` header, ``inlineData`` parts, ``finishReason``,
``promptFeedback.blockReason``, ``{"error": {code, message, status}}`` for errors), so the
Gemini backend is tested through the real SDK with ``HttpOptions(base_url=...)``.

Replies come from a list, one per request in order (the last one repeats):
- ``"image"``: a success with a PNG (a gradient whose size follows the requested aspect);
- ``{"status": 429}`` (or any code): an API error;
- ``{"finish_reason": "IMAGE_SAFETY", "text": ...}``: a candidate without an image;
- ``{"block_reason": "SAFETY"}``: a blocked prompt (no candidates).
Every request is recorded with its headers.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from genevolve_graph.testing.server_thread import ServedApp

STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass
class GeminiRequest:
    model: str
    body: dict[str, Any]
    api_key: str | None


def png_for_aspect(aspect: str | None, long_side: int = 64) -> bytes:
    """A PNG gradient with the requested aspect ratio ("3:2" -> 64x43)."""
    width, height = (int(part) for part in (aspect or "1:1").split(":"))
    scale = long_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ScriptedGeminiServer(ServedApp):
    replies: list[Any] = field(default_factory=lambda: ["image"])

    def __post_init__(self) -> None:
        self.requests: list[GeminiRequest] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{version}/models/{target}", self._generate, methods=["POST"])])

    async def _generate(self, request: Request) -> JSONResponse:
        target = request.path_params["target"]
        model, _, method = target.partition(":")
        if method != "generateContent":
            return JSONResponse({"error": {"code": 404, "message": f"unknown method {method}", "status": "NOT_FOUND"}}, status_code=404)
        body = await request.json()
        with self._lock:
            index = len(self.requests)
            self.requests.append(GeminiRequest(model, body, request.headers.get("x-goog-api-key")))
            reply = self.replies[min(index, len(self.replies) - 1)]
        if reply == "image":
            aspect = ((body.get("generationConfig") or {}).get("imageConfig") or {}).get("aspectRatio")
            data = base64.b64encode(png_for_aspect(aspect)).decode()
            parts = [{"text": "Here is the image."}, {"inlineData": {"mimeType": "image/png", "data": data}}]
            return JSONResponse({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
                                 "modelVersion": model})
        if "status" in reply:
            code = int(reply["status"])
            status = STATUS_NAMES.get(code, "UNKNOWN")
            return JSONResponse({"error": {"code": code, "message": reply.get("message", f"scripted {status}"), "status": status}},
                                status_code=code)
        if "block_reason" in reply:
            return JSONResponse({"promptFeedback": {"blockReason": reply["block_reason"],
                                                    "blockReasonMessage": reply.get("message", "")}})
        parts = [{"text": reply["text"]}] if reply.get("text") else []
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "finishReason": reply["finish_reason"]}
        if reply.get("finish_message"):
            candidate["finishMessage"] = reply["finish_message"]
        return JSONResponse({"candidates": [candidate]})
