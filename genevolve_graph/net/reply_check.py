"""Check that a policy endpoint's HTTP reply is a chat completion before the SDK parses it.

A proxy error page, a half-written body or a server speaking another API otherwise surfaces
deep inside the OpenAI SDK or langchain-openai as ``IndexError``, ``UnicodeDecodeError``
or ``'NoneType' object has no attribute 'get'``. Checking the raw body here lets the
trajectory end with a message that names the endpoint and what was wrong with its reply.
"""

from __future__ import annotations

import codecs
import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

from genevolve_graph.util.causes import caused_by


class MalformedReply(ValueError):
    """The endpoint answered 2xx with something that is not a chat completion."""


def malformed_reply(exc: BaseException | None) -> MalformedReply | None:
    """The reply check's verdict when ``exc`` is it or was caused by it (the SDK may wrap
    errors raised by response hooks in ``APIConnectionError``)."""
    return caused_by(exc, MalformedReply)


def redact_endpoint(url: str) -> str:
    """``url`` without ``user:password@``, query string and fragment (where keys hide)."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _snippet(data: bytes) -> str:
    """The first bytes, printable and on one line."""
    return repr(data[:40]) + ("…" if len(data) > 40 else "")


def _decode_json(body: bytes, content_type: str, charset: str | None) -> Any:
    """The JSON value of ``body``: in ``charset`` when the reply names one, else in the JSON
    encodings (UTF-8, or UTF-16/32 recognisable from the first bytes, as the SDK reads it)."""
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            raise MalformedReply(f"the reply names an unknown charset {charset!r}") from None
    encoding = charset or json.detect_encoding(body)
    media = content_type or "no content type"
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise MalformedReply(
            f"the reply body ({media}, {len(body)} bytes) is not {encoding} text: undecodable bytes at offset {exc.start} "
            f"(starts {_snippet(body)}); JSON replies must be UTF-8"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedReply(
            f"the reply body ({media}, {len(body)} bytes) is not JSON: {exc.msg} at offset {exc.pos} (starts {_snippet(body)})"
        ) from None


def check_completion(body: bytes, content_type: str = "", charset: str | None = None) -> None:
    """Raise :class:`MalformedReply` saying what is wrong when ``body`` is not a chat completion."""
    parse_completion(body, content_type, charset)


def parse_completion(body: bytes, content_type: str = "", charset: str | None = None) -> dict[str, Any]:
    """The chat completion in ``body``, decoded once and checked; :class:`MalformedReply`
    saying what is wrong when it is not one."""
    if not body.strip():
        raise MalformedReply("the reply body is empty")
    value = _decode_json(body, content_type, charset)
    if not isinstance(value, dict):
        raise MalformedReply(f"the reply is a JSON {type(value).__name__}, not a chat completion object")
    if "choices" not in value or value["choices"] is None:
        if isinstance(value.get("error"), (dict, str)):
            error = value["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise MalformedReply(f"the reply is an error object instead of a completion: {str(message)[:300]}")
        keys = ", ".join(sorted(map(str, value))[:8]) or "none"
        raise MalformedReply(f"the reply has no 'choices' (keys: {keys}); is this an OpenAI-compatible /chat/completions endpoint?")
    choices = value["choices"]
    if not isinstance(choices, list):
        raise MalformedReply(f"'choices' in the reply is a JSON {type(choices).__name__}, not a list")
    if not choices:
        raise MalformedReply("the reply has an empty 'choices' list (no completion)")
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        raise MalformedReply("the first choice of the reply has no 'message' object")
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise MalformedReply(f"the reply message's 'content' is a JSON {type(content).__name__}, not text")
    return value


def endpoint_completion(body: bytes, content_type: str, charset: str | None, *, role: str, url: str) -> dict[str, Any]:
    """:func:`parse_completion` of a reply from ``url``; a :class:`MalformedReply` names the
    ``role`` endpoint (without credentials) and what was wrong."""
    try:
        return parse_completion(body, content_type, charset)
    except MalformedReply as exc:
        raise MalformedReply(f"the {role} endpoint {redact_endpoint(url)} sent a malformed reply: {exc}") from None


def completion_hook(role: str = "policy") -> Callable[[httpx.Response], Awaitable[None]]:
    """An httpx response hook that checks successful ``/chat/completions`` replies (streams
    excepted) and raises :class:`MalformedReply` naming the ``role`` endpoint and the fault."""

    async def check_response(response: httpx.Response) -> None:
        if not response.is_success or not response.request.url.path.rstrip("/").endswith("/chat/completions"):
            return
        if "text/event-stream" in response.headers.get("content-type", ""):
            return
        body = await response.aread()
        endpoint_completion(body, response.headers.get("content-type", ""), response.charset_encoding,
                            role=role, url=str(response.request.url))

    return check_response


__all__ = ["MalformedReply", "check_completion", "completion_hook", "endpoint_completion", "malformed_reply", "parse_completion",
           "redact_endpoint"]
