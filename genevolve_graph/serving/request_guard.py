"""The served graphs' request guard: a foreign web page cannot make the dev server run anything.

CORS only decides whether a browser lets a page *read* a reply, and whether it sends a
*preflight* first. A "simple" request (``POST`` with ``Content-Type: text/plain``, a form
post) goes out without a preflight, and the LangGraph API server parses its body as JSON
whatever its type: a page on any site could start runs on a developer's ``langgraph dev``
(docs/security.md). This ASGI middleware, mounted through ``langgraph.json``'s ``http.app``
(both ``langgraph.json`` and ``langgraph.studio.json`` name :data:`app`), refuses before
any route runs:

- a state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) whose ``Origin`` is not
  allowed: 403. Allowed are the origins of the server's CORS settings (``http.cors`` in the
  config, which the API server hands its process as ``LANGGRAPH_HTTP``; else ``CORS_CONFIG``;
  else Studio's origin and loopback origins, as ``langgraph.json`` lists them) and those the
  operator adds in ``GENEVOLVE_ALLOWED_ORIGINS`` (comma- or space-separated). A request
  without ``Origin`` (``curl``, ``langgraph-sdk``, ``RemoteGraph``: tools on a host that can
  already reach the port) passes this check;
- a state-changing request with a body that is not JSON (``Content-Type`` other than
  ``application/json`` or ``application/*+json``): 415. Browsers cannot send JSON across
  origins without a preflight, so this also holds when an origin is missing or forged.

- a run whose ``context`` holds a value of the wrong JSON type for a field of
  ``AgentContext`` (``"max_rounds": "11"``, ``"options": [1]``), or a name no registry
  knows: 422 naming the field, before the run is created (otherwise the run would be
  accepted and then fail). Keys the context does not know are left to the server, which
  drops them. Bodies of run requests are read whole for this check, up to
  ``MAX_RUN_BODY_BYTES`` (413 beyond).

The reply is a JSON ``{"detail": ...}`` naming the header, field or setting at fault.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from genevolve_graph.core.context import AgentContext

ALLOWED_ORIGINS_ENV = "GENEVOLVE_ALLOWED_ORIGINS"
STUDIO_ORIGIN = "https://smith.langchain.com"
LOOPBACK_ORIGIN_REGEX = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?$"
"""The defaults, the same as ``http.cors`` in ``langgraph.json`` (a test keeps them equal)."""
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RUN_PATH = re.compile(r"^/(threads/[^/]+/)?runs(/wait|/stream|/batch)?/?$")
"""The routes that create runs (and so build a context from the body)."""
MAX_RUN_BODY_BYTES = 32 * 1024 * 1024
"""A run request carries a request text and settings; inline reference images stay well below."""
_JSON_TYPE = re.compile(r"^application/([\w.+-]+\+)?json$", re.I)


@dataclass(frozen=True)
class OriginPolicy:
    """Which browser origins may change state: exact origins and one pattern (CORS's own form)."""

    origins: frozenset[str]
    pattern: re.Pattern[str] | None
    any_origin: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "OriginPolicy":
        env = os.environ if environ is None else environ
        cors = _cors_settings(env)
        listed = [str(o) for o in cors.get("allow_origins", [])] if cors else [STUDIO_ORIGIN]
        regex = cors.get("allow_origin_regex") if cors else LOOPBACK_ORIGIN_REGEX
        extra = [o for o in re.split(r"[,\s]+", env.get(ALLOWED_ORIGINS_ENV, "")) if o]
        origins = frozenset(_normal(o) for o in listed + extra if o != "*")
        return cls(origins, re.compile(regex) if regex else None, any_origin="*" in listed + extra)

    def allows(self, origin: str) -> bool:
        if self.any_origin:
            return True
        normal = _normal(origin)
        return normal in self.origins or bool(self.pattern and self.pattern.fullmatch(origin))


def _normal(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _cors_settings(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The server's CORS settings, read as the API server reads them (``CORS_CONFIG`` first)."""
    for name, pick in (("CORS_CONFIG", lambda v: v), ("LANGGRAPH_HTTP", lambda v: v.get("cors") if isinstance(v, dict) else None)):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            found = pick(json.loads(raw))
        except ValueError:
            continue
        if isinstance(found, dict):
            return found
    return None


def is_json_type(content_type: str) -> bool:
    return bool(_JSON_TYPE.match(content_type.split(";", 1)[0].strip()))


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in headers


class RequestGuard:
    """ASGI middleware: refuse foreign-origin and non-JSON state-changing requests (403 / 415)."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy | None = None) -> None:
        self.app = app
        self.policy = policy or OriginPolicy.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"].upper() not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(headers)
        if refusal is None and scope["method"].upper() == "POST" and RUN_PATH.match(scope.get("path", "")):
            body, refusal = await _read_body(receive)
            if refusal is None:
                refusal = context_refusal(body)
            receive = _replay(body, receive)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)

    def refusal(self, headers: Headers) -> tuple[int, str] | None:
        origin = headers.get("origin")
        if origin is not None and not self.policy.allows(origin):
            return 403, (f"Origin {origin!r} may not change state on this server; the server's operator can allow it in "
                         f"http.cors.allow_origins of langgraph.json or in {ALLOWED_ORIGINS_ENV}")
        content_type = headers.get("content-type", "")
        if (_has_body(headers) or content_type) and not is_json_type(content_type):
            shown = content_type or "none"
            return 415, f"Content-Type {shown!r} is refused: send the request body as JSON (Content-Type: application/json)"
        return None


async def _read_body(receive: Receive) -> tuple[bytes, tuple[int, str] | None]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), (400, "the client went away before its request body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_RUN_BODY_BYTES:
            return b"", (413, f"a run request body may hold at most {MAX_RUN_BODY_BYTES:,} bytes; send inline images by URL or smaller")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the client's own messages."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def context_refusal(body: bytes) -> tuple[int, str] | None:
    """422 naming the field when a run's ``context`` cannot make an ``AgentContext``: a value
    of the wrong JSON type, or a backend name no registry knows. Unknown keys pass (the
    server drops them); a body that is not JSON is left to the server's own 422."""
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        return None
    known = {f.name for f in fields(AgentContext)}
    for run in payload if isinstance(payload, list) else [payload]:
        context = run.get("context") if isinstance(run, dict) else None
        if not isinstance(context, dict):
            continue
        try:
            AgentContext(**{k: v for k, v in context.items() if k in known})
        except (TypeError, ValueError) as exc:
            return 422, f"{exc} (the run's context)"
    return None


app = Starlette(middleware=[Middleware(RequestGuard)])
"""What ``http.app`` names: no routes of its own, only the guard in front of the API's routes."""

__all__ = ["ALLOWED_ORIGINS_ENV", "LOOPBACK_ORIGIN_REGEX", "MAX_RUN_BODY_BYTES", "context_refusal", "OriginPolicy", "RequestGuard", "STUDIO_ORIGIN", "app", "is_json_type"]
