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
- ``GENEVOLVE_ALLOWED_ROOTS``: folders (``os.pathsep``-separated) that the files a caller
  names to *read* must stay under. Default: the server's working directory and the
  genevolve-graph cache folder (default renders, downloads and traces).
- ``GENEVOLVE_RENDERS_DIR``: the one folder a caller's run *writes* into (default: the
  cache's ``renders`` folder, never the working directory). Each run writes in a subfolder
  the server names after the run's thread (:func:`served_output_path`), a caller's
  ``output_dir`` may only pick a folder inside it, ``output_name`` is a plain name with an
  image suffix, and a trace database is never an output.

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
from urllib.parse import unquote, urlsplit

from genevolve_graph.core.context import AgentContext, is_caller_context, mark_caller
from genevolve_graph.core.model_string import ALLOWED_PROVIDERS_ENV, split_model_string
from genevolve_graph.util.paths import cache_root, default_output_dir, file_stem, trace_databases

ALLOWED_BASE_URLS_ENV = "GENEVOLVE_ALLOWED_BASE_URLS"
ALLOWED_ROOTS_ENV = "GENEVOLVE_ALLOWED_ROOTS"
RENDERS_DIR_ENV = "GENEVOLVE_RENDERS_DIR"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
"""What a caller's ``output_name`` may end in: it names an image, never a file of another kind."""
CONFIGURED_URL_ENVS = ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "SERPER_BASE_URL", "TAVILY_BASE_URL", "SEARXNG_URL")

PATH_FIELDS = ("corpus", "image_dir", "skills_dir", "system_prompt_file", "guide_dir")
"""Context fields that name files or folders on the server that a run reads."""
WRITE_FIELDS = ("output_dir",)
"""Context fields that name a folder a run writes into: only inside the renders folder."""
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
        """The endpoint, or ``None`` when ``url`` is not a plain http(s) endpoint: a path with
        dot segments (also percent-encoded), empty segments (``//``), encoded slashes or
        backslashes is refused, since a client or a proxy may resolve it to another path
        than the prefix it seems to be under."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            return None
        path = parts.path.rstrip("/")
        if not _plain_path(path):
            return None
        return cls(scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80), path)

    def within(self, allowed: "Endpoint") -> bool:
        """Same origin, and the path is the allowed one or below it."""
        same_origin = (self.scheme, self.host, self.port) == (allowed.scheme, allowed.host, allowed.port)
        return same_origin and (self.path == allowed.path or self.path.startswith(allowed.path + "/"))


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator allows callers: credentialed endpoints, the roots a caller's run
    reads under, and the one folder it writes into."""

    endpoints: tuple[str, ...]
    roots: tuple[Path, ...]
    renders: Path = Path()
    providers: frozenset[str] = frozenset()
    """``init_chat_model`` providers whose ``provider:model`` strings callers may choose."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "OperatorSettings":
        env = os.environ if environ is None else environ
        listed = [u for u in re.split(r"[,\s]+", env.get(ALLOWED_BASE_URLS_ENV, "")) if u]
        configured = [env[name] for name in CONFIGURED_URL_ENVS if env.get(name, "").strip()]
        raw_roots = [r for r in env.get(ALLOWED_ROOTS_ENV, "").split(os.pathsep) if r.strip()]
        roots = [Path(r).expanduser() for r in raw_roots] if raw_roots else [Path.cwd(), cache_root()]
        raw_renders = env.get(RENDERS_DIR_ENV, "").strip()
        renders = Path(raw_renders).expanduser() if raw_renders else default_output_dir()
        providers = frozenset(p.lower() for p in re.split(r"[,\s]+", env.get(ALLOWED_PROVIDERS_ENV, "")) if p)
        return cls(tuple(configured + listed), tuple(r.resolve() for r in roots), renders.resolve(), providers)

    def endpoint_allowed(self, url: str) -> bool:
        wanted = Endpoint.parse(url)
        if wanted is None:
            return False
        return any(wanted.within(a) for a in (Endpoint.parse(u) for u in self.endpoints) if a is not None)

    def path_allowed(self, path: str | Path) -> Path | None:
        """The resolved path when it lies under a root (symlinks followed), else ``None``."""
        resolved = Path(path).expanduser().resolve()
        return resolved if any(resolved == root or resolved.is_relative_to(root) for root in self.roots) else None

    def write_dir_allowed(self, path: str | Path) -> Path | None:
        """The resolved folder when it is the renders folder or inside it, else ``None``."""
        resolved = Path(path).expanduser().resolve()
        return resolved if resolved == self.renders or resolved.is_relative_to(self.renders) else None


_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|25)", re.I)


def _plain_path(path: str) -> bool:
    """No segment of ``path`` is empty, ``.`` or ``..`` (after decoding ``%2e``), and no
    separator hides behind an escape (``%2f``, ``%5c``, a double-encoded ``%25``)."""
    if "\\" in path or _ENCODED_SEPARATOR.search(path):
        return False
    segments = unquote(path).split("/")[1:] if path else []
    return all(segment not in ("", ".", "..") for segment in segments)


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
    for name in WRITE_FIELDS:
        value = getattr(ctx, name)
        if value and settings.write_dir_allowed(str(value)) is None:
            raise _refuse(name, str(value), _renders_fix(settings))
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
    if name is not None and not _plain_image_name(name):
        raise _refuse("options['output_name']", name,
                      f"it must be a plain file name without folders, ending in {', '.join(IMAGE_SUFFIXES)}")


def _plain_image_name(name: Any) -> bool:
    return (isinstance(name, str) and Path(name).name == name and name not in ("", ".", "..") and not name.startswith(".")
            and "\\" not in name and "\x00" not in name and Path(name).suffix.lower() in IMAGE_SUFFIXES)


def _renders_fix(settings: OperatorSettings) -> str:
    return (f"a caller's run writes only inside the server's renders folder {settings.renders} (leave output_dir empty, "
            f"or name a folder inside it); the server's operator sets that folder with {RENDERS_DIR_ENV}")


def _looks_like_hub_id(value: str) -> bool:
    return bool(_HUB_ID.match(value)) and not value.startswith((".", "~")) and not Path(value).expanduser().exists()


def _service_urls(options: Mapping[str, Any]) -> Iterable[str]:
    from genevolve_graph.core.options import get_list

    try:
        return get_list(options, "service_urls")
    except ValueError as exc:
        raise ContextRefused(str(exc)) from None


def run_folder_name(thread_id: str) -> str:
    """The subfolder of a caller's run, named by the server: its thread (a fresh name when
    the run has none), cleaned into a folder name."""
    import uuid

    return file_stem(thread_id) if thread_id else f"run-{uuid.uuid4().hex}"


def served_output_path(ctx: "AgentContext", thread_id: str, name: str, settings: OperatorSettings | None = None) -> Path:
    """Where a caller's run writes its image (blocking: it resolves paths):
    ``<renders folder or the caller's folder inside it>/<run folder>/<name>``.

    ``name`` is the caller's ``output_name`` or a name the server made; both are checked here
    again, and the file may be neither outside the renders folder nor a trace database.
    """
    settings = settings or OperatorSettings.from_env()
    base = settings.renders
    if ctx.output_dir:
        allowed = settings.write_dir_allowed(ctx.output_dir)
        if allowed is None:
            raise _refuse("output_dir", ctx.output_dir, _renders_fix(settings))
        base = allowed
    if not _plain_image_name(name):
        raise _refuse("output name", name, f"it must be a plain file name ending in {', '.join(IMAGE_SUFFIXES)}")
    path = base / run_folder_name(thread_id) / name
    check_not_trace_database(path)
    return path


def check_not_trace_database(path: Path) -> None:
    """No output is ever a trace database or one of its ``-wal``/``-shm``/``-journal`` files."""
    from genevolve_graph.safety.file_guard import same_file, sqlite_family

    for db in trace_databases():
        for protected in sqlite_family(db):
            if same_file(path, protected):
                raise _refuse("output path", str(path), f"it is the trace database file {protected}; choose another output")


__all__ = [
    "ALLOWED_BASE_URLS_ENV",
    "ALLOWED_ROOTS_ENV",
    "ContextRefused",
    "IMAGE_SUFFIXES",
    "OperatorSettings",
    "RENDERS_DIR_ENV",
    "check_caller_context",
    "check_not_trace_database",
    "run_folder_name",
    "served_output_path",
    "is_caller_context",
    "mark_caller",
]
