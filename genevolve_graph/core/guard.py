"""Confinement of run contexts that come from callers (Studio, the dev server, dict contexts).

A context that arrives as data, from a ``langgraph dev`` caller or as a plain dict handed to
:func:`~genevolve_graph.agent.embed.as_runnable` / the subgraph, is hostile until checked: it must
not make the server send its own credentials to an endpoint the caller chose, nor read or
write files outside what the operator allows. The operator decides both in the server's
environment:

- ``GENEVOLVE_ALLOWED_BASE_URLS``: endpoints (comma- or space-separated URL prefixes) that
  may receive the server's credentials, besides those the server's environment already
  names (``GENEVOLVE_BASE_URL``, ``OPENAI_BASE_URL``, ``SERPER_BASE_URL``,
  ``TAVILY_BASE_URL``, ``SEARXNG_URL``).
- ``GENEVOLVE_ALLOWED_MODEL_PROVIDERS``: ``init_chat_model`` providers (``openai``,
  ``anthropic``, ...) whose ``provider:model`` strings a caller may put in ``model``; none by
  default, since such a model calls the provider with the server's own key.
- ``GENEVOLVE_ALLOWED_ROOTS``: folders (``os.pathsep``-separated) that caller paths must
  stay under. Default: the server's working directory and the genevolve-graph cache folder
  (default renders, downloads and traces).

A context built in Python (an ``AgentContext`` object, the command line) is the operator's
own and is not checked: that caller already runs code in the process. See docs/security.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from genevolve_graph.core.context import AgentContext, is_caller_context, mark_caller
from genevolve_graph.core.model_string import ALLOWED_PROVIDERS_ENV, split_model_string
from genevolve_graph.util.paths import cache_root

ALLOWED_BASE_URLS_ENV = "GENEVOLVE_ALLOWED_BASE_URLS"
ALLOWED_ROOTS_ENV = "GENEVOLVE_ALLOWED_ROOTS"
CONFIGURED_URL_ENVS = ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "SERPER_BASE_URL", "TAVILY_BASE_URL", "SEARXNG_URL")

PATH_FIELDS = ("output_dir", "corpus", "image_dir", "skills_dir", "system_prompt_file", "guide_dir")
"""Context fields that name files or folders on the server."""
PATH_OPTIONS = ("image_download_dir", "pipeline", "t2i_pipeline")
"""Options that name files or folders (``pipeline`` may also be a hub id)."""
URL_OPTIONS = ("serper_base_url", "tavily_base_url", "gemini_base_url", "searxng_url")
"""Options that name an endpoint the server would send its credentials to."""
IMPORT_OPTIONS = ("langchain_search", "pipeline_class", "t2i_pipeline_class")
"""Options that may name ``module:attribute`` to import: code chosen by the caller."""
OPERATOR_ONLY_OPTIONS = ("allow_hosts",)
"""Options that widen the downloader's address guard: the operator's decision alone."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class ContextRefused(ValueError):
    """A caller's context asks for something the operator does not allow; the message names
    the field and the setting that would allow it."""


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> "Endpoint | None":
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            return None
        return cls(scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80), parts.path.rstrip("/"))

    def within(self, allowed: "Endpoint") -> bool:
        """Same origin, and the path is the allowed one or below it."""
        same_origin = (self.scheme, self.host, self.port) == (allowed.scheme, allowed.host, allowed.port)
        return same_origin and (self.path == allowed.path or self.path.startswith(allowed.path + "/"))


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator allows callers: credentialed endpoints and file-system roots."""

    endpoints: tuple[str, ...]
    roots: tuple[Path, ...]
    providers: frozenset[str] = frozenset()
    """``init_chat_model`` providers whose ``provider:model`` strings callers may choose."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "OperatorSettings":
        env = os.environ if environ is None else environ
        listed = [u for u in re.split(r"[,\s]+", env.get(ALLOWED_BASE_URLS_ENV, "")) if u]
        configured = [env[name] for name in CONFIGURED_URL_ENVS if env.get(name, "").strip()]
        raw_roots = [r for r in env.get(ALLOWED_ROOTS_ENV, "").split(os.pathsep) if r.strip()]
        roots = [Path(r).expanduser() for r in raw_roots] if raw_roots else [Path.cwd(), cache_root()]
        providers = frozenset(p.lower() for p in re.split(r"[,\s]+", env.get(ALLOWED_PROVIDERS_ENV, "")) if p)
        return cls(tuple(configured + listed), tuple(r.resolve() for r in roots), providers)

    def endpoint_allowed(self, url: str) -> bool:
        wanted = Endpoint.parse(url)
        if wanted is None:
            return False
        return any(wanted.within(a) for a in (Endpoint.parse(u) for u in self.endpoints) if a is not None)

    def path_allowed(self, path: str | Path) -> Path | None:
        """The resolved path when it lies under a root (symlinks followed), else ``None``."""
        resolved = Path(path).expanduser().resolve()
        return resolved if any(resolved == root or resolved.is_relative_to(root) for root in self.roots) else None


def _refuse(what: str, value: Any, fix: str) -> ContextRefused:
    return ContextRefused(f"context {what} = {value!r} is refused: {fix}")


def _roots_fix(settings: OperatorSettings) -> str:
    roots = ", ".join(str(r) for r in settings.roots)
    return f"caller paths must stay under {roots}; the server's operator can widen this with {ALLOWED_ROOTS_ENV}"


def _check_endpoint(what: str, url: str, settings: OperatorSettings) -> None:
    if not settings.endpoint_allowed(url):
        raise _refuse(
            what, _safe_url(url),
            f"the server sends its credentials only to endpoints its operator configured; "
            f"add this endpoint to {ALLOWED_BASE_URLS_ENV} on the server, or leave it empty to use the server's default",
        )


def _safe_url(url: str) -> str:
    from genevolve_graph.safety.redaction import redact_url

    return redact_url(str(url))


def _check_path(what: str, value: Any, settings: OperatorSettings) -> None:
    if settings.path_allowed(str(value)) is None:
        raise _refuse(what, str(value), _roots_fix(settings))


def check_caller_context(ctx: "AgentContext", settings: OperatorSettings | None = None) -> None:
    """Raise :class:`ContextRefused` unless every endpoint and path of ``ctx`` is allowed.

    Blocking (it resolves paths): async callers run it in a worker thread.
    """
    settings = settings or OperatorSettings.from_env()
    if ctx.policy == "openai" and ctx.base_url:
        _check_endpoint("base_url", ctx.base_url, settings)
    model = split_model_string(ctx.model) if ctx.policy == "openai" else None
    if model is not None and model[0] not in settings.providers:
        raise _refuse("model", ctx.model, f"the server builds 'provider:model' strings only for providers its operator allows; "
                      f"add {model[0]!r} to {ALLOWED_PROVIDERS_ENV} on the server, or name a model at an allowed base_url")
    for name in PATH_FIELDS:
        value = getattr(ctx, name)
        if value:
            _check_path(name, value, settings)
    embedding_model = getattr(ctx, "embedding_model", "")
    if embedding_model and not _looks_like_hub_id(str(embedding_model)):  # a hub id, or a local path under the roots
        _check_path("embedding_model", embedding_model, settings)
    options = ctx.options or {}
    if not isinstance(options, Mapping):
        raise _refuse("options", options, "options must be a JSON object")
    for name in OPERATOR_ONLY_OPTIONS:
        if options.get(name):
            raise _refuse(f"options[{name!r}]", options[name], "only the server's operator may widen the download guard (run the command line or a Python caller instead)")
    for name in IMPORT_OPTIONS:
        value = options.get(name)
        if value is not None and (not isinstance(value, str) or ":" in value):
            raise _refuse(f"options[{name!r}]", value, "a caller may not name code to import; use a plain class name, or configure it on the server")
    for name in URL_OPTIONS:
        if options.get(name):
            _check_endpoint(f"options[{name!r}]", str(options[name]), settings)
    for url in _service_urls(options):
        _check_endpoint("options['service_urls']", url, settings)
    for name in PATH_OPTIONS:
        value = options.get(name)
        if value and not (name != "image_download_dir" and _looks_like_hub_id(str(value))):
            _check_path(f"options[{name!r}]", value, settings)
    name = options.get("output_name")
    if name is not None and (not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..")):
        raise _refuse("options['output_name']", name, "it must be a plain file name, without folders")


def _looks_like_hub_id(value: str) -> bool:
    return bool(_HUB_ID.match(value)) and not value.startswith((".", "~")) and not Path(value).expanduser().exists()


def _service_urls(options: Mapping[str, Any]) -> Iterable[str]:
    from genevolve_graph.core.options import get_list

    try:
        return get_list(options, "service_urls")
    except ValueError as exc:
        raise ContextRefused(str(exc)) from None


def check_output_path(path: Path, settings: OperatorSettings | None = None) -> None:
    """An output file of a caller's run must land under a root (blocking)."""
    settings = settings or OperatorSettings.from_env()
    if settings.path_allowed(path.parent) is None or Path(path.name).name != path.name:
        raise _refuse("output path", str(path), _roots_fix(settings))


__all__ = [
    "ALLOWED_BASE_URLS_ENV",
    "ALLOWED_ROOTS_ENV",
    "ContextRefused",
    "OperatorSettings",
    "check_caller_context",
    "check_output_path",
    "is_caller_context",
    "mark_caller",
]
