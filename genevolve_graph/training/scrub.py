"""Secret scrubbing for exported training data.

Training data leaves the machine it was recorded on, so everything an export writes goes
through ``Scrubber``: API keys in well-known formats, ``Authorization`` headers and bearer
tokens, ``key=…``-style assignments and URL parameters, passwords in URLs, the values of
secret-looking environment variables, and home-directory paths (made relative to the home
directory, written ``~/…``, which also drops the user name).

The patterns are narrow on purpose: an export of a trajectory without secrets must stay
byte-identical to what the policy received, so ordinary prose ("tokens", "secret garden")
is never touched.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

REDACTED = "[REDACTED]"

_KEY_FORMATS = [
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",  # OpenAI, Anthropic
    r"AIza[0-9A-Za-z_\-]{35}",  # Google
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"gh[pousr]_[A-Za-z0-9]{36,}",  # GitHub
    r"github_pat_[A-Za-z0-9_]{40,}",
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab
    r"xox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
    r"AKIA[0-9A-Z]{16}",  # AWS access key id
    r"tvly-[A-Za-z0-9_\-]{16,}",  # Tavily
]
_KEY_RE = re.compile(r"(?<![A-Za-z0-9_\-])(?:" + "|".join(_KEY_FORMATS) + r")")
_AUTH_HEADER_RE = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-goog-api-key)(\"?\s*[:=]\s*\"?)((?:bearer|basic|token|digest)\s+)?([^\s\"',;}]{4,})"
)
_BEARER_RE = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=\-]{12,})")
_ASSIGN_RE = re.compile(
    r"(?i)\b([A-Za-z0-9_]*(?:api[_\-]?key|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|secret[_\-]?key|client[_\-]?secret|password|passwd))"
    r"(\"?\s*[:=]\s*\"?)([^\s\"'&,;}]{6,})"
)
_URL_PARAM_RE = re.compile(r"(?i)([?&](?:key|api_key|apikey|token|access_token|sig|signature|auth|x-amz-signature)=)([^&#\s\"']+)")
_URL_CREDENTIALS_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s:@]+):([^/\s@]+)@")
_HOME_RE = re.compile(r"(?<![\w.\-])(?:/home/[^/\s\"']+|/Users/[^/\s\"']+|/root)/")
_SECRET_ENV_RE = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)")
_TRIGGER_RE = re.compile(
    r"(?i)sk-|aiza|hf_|gh[pousr]_|github_pat_|glpat-|xox[abprs]-|akia|tvly-|authorization|api[_\-]?key|bearer|access[_\-]?token"
    r"|auth[_\-]?token|refresh[_\-]?token|secret[_\-]?key|client[_\-]?secret|passw|[?&](?:key|token|sig|auth|x-amz)"
    r"|://[^/\s:@]+:[^/\s@]+@|/home/|/users/|/root/"
)
"""A superset of what the patterns below can match: one scan tells most texts are clean."""


def _env_secrets() -> list[str]:
    """Values of secret-looking environment variables, longest first (only real-looking ones)."""
    values = {
        value for name, value in os.environ.items() if _SECRET_ENV_RE.search(name) and len(value) >= 8 and value.strip() == value
    }
    return sorted(values, key=len, reverse=True)


class Scrubber:
    """Removes secrets and home-directory paths from strings and nested JSON values."""

    def __init__(self, *, home: str | None = None, env_secrets: list[str] | None = None) -> None:
        home = home if home is not None else str(Path.home())
        self.home = home.rstrip("/") if home not in ("", "/") else ""
        self.env_secrets = _env_secrets() if env_secrets is None else env_secrets
        self._home_re = (
            re.compile(r"(?<![\w.\-])(?:file://)?" + re.escape(self.home) + r"/") if self.home else None
        )
        self.text = lru_cache(maxsize=4096)(self._text)

    def _text(self, text: str) -> str:
        if not text:
            return text
        for secret in self.env_secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if not _TRIGGER_RE.search(text) and not (self.home and self.home + "/" in text):
            return text
        text = _KEY_RE.sub(REDACTED, text)
        text = _AUTH_HEADER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}", text)
        text = _BEARER_RE.sub(lambda m: m.group(1) + REDACTED, text)
        text = _ASSIGN_RE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        text = _URL_PARAM_RE.sub(lambda m: m.group(1) + REDACTED, text)
        text = _URL_CREDENTIALS_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
        if self._home_re is not None:
            text = self._home_re.sub("~/", text)
        text = _HOME_RE.sub("~/", text)
        return text

    def __call__(self, value: Any) -> Any:
        """``value`` with every string inside it scrubbed (dicts, lists and tuples are copied)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(item) for item in value]
        return value
