"""One way to keep credentials out of everything a run records (run.json, checkpoint
metadata, results, logs): URLs lose the password of their ``user:password@`` part (and a
bare ``token@`` on web schemes), and query parameters whose names say they are secrets
lose their values. Everything else is kept as it is, so a recorded URL still names the
endpoint it was.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
SECRET_PARAM = re.compile(
    r"(?i)^(?:.*[_\-])?(?:key|api[_\-]?key|apikey|token|access[_\-]?token|auth|authorization|secret|password|passwd|pwd|"
    r"sig|signature|credential|credentials|session|sessionid|x-amz-signature|x-amz-credential|x-amz-security-token)$"
)
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_WEB_SCHEMES = ("http", "https", "ws", "wss", "ftp")
_QUERY_PAIR = re.compile(r"([^&;=]+)=([^&;]*)")


def redact_url(url: str) -> str:
    """``url`` without credentials: ``user:password@`` becomes ``user:***@``, a bare user on a
    web scheme (usually a token) becomes ``***@``, secret query values become ``***``.
    A string that is not a URL comes back unchanged."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_userinfo_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            netloc = f"{user}:{MASK}@{host}"
        elif parts.scheme.lower() in _WEB_SCHEMES:
            netloc = f"{MASK}@{host}"
    query = _QUERY_PAIR.sub(lambda m: f"{m.group(1)}={MASK}" if SECRET_PARAM.match(m.group(1)) and m.group(2) else m.group(0), parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _mask_userinfo_text(url: str) -> str:
    return re.sub(r"(://[^/@\s:]*):[^/@\s]*@", rf"\1:{MASK}@", url)


def redact_text(text: str) -> str:
    """Every URL inside free text (an error message, a log line) redacted."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact_value(value: Any) -> Any:
    """Strings, lists and dicts with every URL in them redacted (for records and manifests)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter (for a handler) that redacts URLs in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


__all__ = ["MASK", "RedactingFilter", "redact_text", "redact_url", "redact_value"]
