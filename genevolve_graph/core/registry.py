"""One registry pattern for every pluggable kind: search, image search, generators, policies.

A registry maps a name to a factory that takes the ``AgentContext`` and returns the object
(a backend, a renderer, a policy). Built-in names point at ``"module:attribute"`` strings and
are imported only when chosen, so an optional backend's dependencies are needed only by its
users. Third-party packages add names without editing ours, through a Python entry point in
the registry's group, for example in their ``pyproject.toml``::

    [project.entry-points."genevolve_graph.search"]
    my-index = "my_package.search:from_context"

Entry points are read once per process (``refresh()`` reads them again); a built-in name
always wins over an entry point of the same name, so an installed package cannot silently
replace a backend the user did not ask it to replace.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable

RunContext = Any
"""The run's ``AgentContext``. Named loosely here because ``core.context`` imports the
registries (to list their names in the context schema), and the registry stays below it."""



def import_path(spec: str) -> Any:
    """The object a ``package.module:attribute`` path names (a dotted attribute is walked).

    Raises ``ImportError`` or ``AttributeError``; each caller words the error for its own input.
    """
    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj

class UnknownName(ValueError):
    """A name no registry entry (built-in or installed) answers to."""


class PluginLoadError(ValueError):
    """A registered factory could not be imported or did not build its object."""


class Registry(Mapping[str, str]):
    """Names of one kind -> ``"module:attribute"`` of a factory ``f(ctx) -> object``.

    A read-only ``Mapping`` (``name in registry``, ``sorted(registry)``) over the built-ins
    and the installed entry points together.
    """

    def __init__(self, kind: str, group: str, builtins: Mapping[str, str], *, field: str, extra: tuple[str, ...] = ()) -> None:
        self.kind = kind
        """In words, for messages: 'search backend', 'renderer', ..."""
        self.group = group
        """The entry-point group third-party packages register under."""
        self.field = field
        """The ``AgentContext`` field that names the choice."""
        self.builtins = dict(builtins)
        self.extra = extra
        """Accepted names that build nothing (the renderer's ``none``)."""
        self._installed: dict[str, EntryPoint] | None = None
        self._lock = threading.Lock()

    # -- discovery

    def installed(self) -> dict[str, EntryPoint]:
        """Entry points of this group, read once (built-in names are not overridable)."""
        with self._lock:
            if self._installed is None:
                found = {ep.name: ep for ep in entry_points(group=self.group)}
                self._installed = {name: ep for name, ep in found.items() if name not in self.builtins}
            return self._installed

    def refresh(self) -> None:
        """Forget the entry points read so far (after installing a plugin in a running process)."""
        with self._lock:
            self._installed = None

    def names(self) -> list[str]:
        """Built-in names first (in their order), then installed ones (sorted), then extras."""
        return [*self.builtins, *sorted(self.installed()), *self.extra]

    def __getitem__(self, name: str) -> str:
        if name in self.builtins:
            return self.builtins[name]
        entry = self.installed().get(name)
        if entry is None:
            raise KeyError(name)
        return entry.value

    def __iter__(self) -> Iterator[str]:
        return iter([*self.builtins, *sorted(self.installed())])

    def __len__(self) -> int:
        return len(self.builtins) + len(self.installed())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.builtins or name in self.installed())

    # -- use

    def check(self, name: str) -> None:
        """Raise ``UnknownName`` naming the context field and the choices when ``name`` is unknown."""
        if name not in self and name not in self.extra:
            raise UnknownName(
                f"unknown {self.kind} {name!r} (context field '{self.field}'); choose one of {', '.join(self.names())}, "
                f"or install a package that registers it under the entry-point group '{self.group}'"
            )

    def is_plugin(self, name: str) -> bool:
        """Whether ``name`` comes from an installed entry point (not a built-in)."""
        return name not in self.builtins and name in self.installed()

    def _origin(self, name: str) -> str:
        """``" (entry point of package P)"`` for an installed name, so a message says what to fix."""
        entry = self.installed().get(name) if name not in self.builtins else None
        if entry is None:
            return ""
        dist = getattr(entry, "dist", None)
        package = getattr(dist, "name", None) if dist is not None else None
        return f" (entry point in group '{self.group}'" + (f" of package {package!r})" if package else ")")

    def factory(self, name: str) -> Callable[[RunContext], Any]:
        """The factory ``name`` points at, imported now.

        Importing runs a plugin's module code: whatever it raises, ``sys.exit`` included,
        becomes a ``PluginLoadError`` naming the plugin, its package and the error, so one
        broken package neither takes the command line down (silently, for ``sys.exit(0)``)
        nor affects the other backends, which are imported only when chosen."""
        self.check(name)
        target = self[name]
        try:
            obj = import_path(target)
        except (ImportError, AttributeError) as exc:
            raise PluginLoadError(f"{self.kind} {name!r}{self._origin(name)} points at {target!r}, which cannot be imported: {exc}") from exc
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin's import-time code may raise anything
            raise PluginLoadError(
                f"{self.kind} {name!r}{self._origin(name)} failed while importing {target!r}: {_describe(exc)}; "
                "fix or uninstall that package, or choose another"
            ) from exc
        if not callable(obj):
            raise PluginLoadError(f"{self.kind} {name!r}{self._origin(name)} points at {target!r}, which is not callable")
        return obj

    def make(self, ctx: RunContext, name: str | None = None) -> Any:
        """Build the object ``ctx.<field>`` (or ``name``) names, from the context. A factory
        that calls ``sys.exit`` is a ``PluginLoadError``, not the end of the process."""
        chosen = name if name is not None else getattr(ctx, self.field)
        factory = self.factory(chosen)
        try:
            return factory(ctx)
        except SystemExit as exc:
            raise PluginLoadError(f"{self.kind} {chosen!r}{self._origin(chosen)} called sys.exit while building: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """One line: the error's type and message."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r})"
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


WEB_BACKENDS: dict[str, str] = {
    "serper": "genevolve_graph.tools.serper:from_context",
    "searxng": "genevolve_graph.tools.searxng:from_context",
    "tavily": "genevolve_graph.tools.tavily:from_context",
    "ddgs": "genevolve_graph.tools.duckduckgo:from_context",
}
"""Web backends serve both kinds (one object has ``search`` and ``search_images``): listed once."""

SEARCH = Registry(
    "search backend",
    "genevolve_graph.search",
    {
        "local": "genevolve_graph.tools.local_search:from_context",
        **WEB_BACKENDS,
        "langchain": "genevolve_graph.tools.langchain_adapter:from_context",
    },
    field="search",
)
IMAGE_SEARCH = Registry(
    "image search backend",
    "genevolve_graph.image_search",
    {"local": "genevolve_graph.tools.local_images:from_context", **WEB_BACKENDS},
    field="image_search",
)
GENERATORS = Registry(
    "renderer",
    "genevolve_graph.generators",
    {
        "preview": "genevolve_graph.generators.preview:from_context",
        "diffusers": "genevolve_graph.generators.diffusers_backend:from_context",
        "service": "genevolve_graph.generators.service_client:from_context",
        "gemini": "genevolve_graph.generators.gemini:from_context",
    },
    field="renderer",
    extra=("none",),
)
POLICIES = Registry(
    "policy",
    "genevolve_graph.policies",
    {
        "rules": "genevolve_graph.policies.rules:RulesPolicy.from_context",
        "openai": "genevolve_graph.policies.openai_chat:OpenAIChatPolicy.from_context",
    },
    field="policy",
)
REGISTRIES: dict[str, Registry] = {r.field: r for r in (SEARCH, IMAGE_SEARCH, GENERATORS, POLICIES)}
"""By the context field each one serves."""


def refresh_all() -> None:
    """Read every group's entry points again."""
    for registry in REGISTRIES.values():
        registry.refresh()


__all__ = ["GENERATORS", "IMAGE_SEARCH", "POLICIES", "REGISTRIES", "SEARCH", "PluginLoadError", "Registry", "UnknownName", "refresh_all"]
