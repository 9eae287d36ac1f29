"""The objects a trajectory uses (policy, search backends, skills, renderer).

Each is either injected by the caller (``build_graph(policy=..., ...)``, for tests, notebooks
and apps that hold their own clients) or built from the runtime context and cached per
event loop and settings, so that a batch of trajectories shares one HTTP client pool.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable

from genevolve_graph.core.context import AgentContext
from genevolve_graph.generators.registry import make_renderer
from genevolve_graph.policies import make_policy
from genevolve_graph.skills import SkillLibrary, load_skills
from genevolve_graph.tools.registry import make_image_search_backend, make_search_backend

if TYPE_CHECKING:
    from genevolve_graph.generators.base import Renderer
    from genevolve_graph.policies.base import Policy
    from genevolve_graph.tools.base import ImageSearchBackend, SearchBackend

_NO_LOOP = OrderedDict()  # objects built outside any event loop
_CACHES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OrderedDict[tuple[Any, ...], Any]]" = weakref.WeakKeyDictionary()
_CACHE_SIZE = 64


def _context_key(ctx: AgentContext) -> tuple[Any, ...]:
    return tuple((f.name, repr(getattr(ctx, f.name))) for f in fields(ctx))


def _cached(kind: str, ctx: AgentContext, build: Callable[[AgentContext], Any]) -> Any:
    """One object per kind, settings and event loop: HTTP clients belong to the loop that
    made them, and a closed loop's cache goes with the loop."""
    try:
        cache = _CACHES.setdefault(asyncio.get_running_loop(), OrderedDict())
    except RuntimeError:
        cache = _NO_LOOP
    key = (kind, _context_key(ctx))
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = build(ctx)
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


async def _acached(kind: str, ctx: AgentContext, build: Callable[[AgentContext], Any]) -> Any:
    """``_cached`` for async nodes: a miss is built in a worker thread, because building may
    read files (skill guides, corpora) and the event loop must not block on disk (the
    ``langgraph dev`` server rejects blocking calls inside async nodes)."""
    cache = _CACHES.setdefault(asyncio.get_running_loop(), OrderedDict())
    key = (kind, _context_key(ctx))
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = await asyncio.to_thread(build, ctx)
    cache.setdefault(key, value)  # another task may have built it meanwhile: keep the first
    cache.move_to_end(key)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return cache[key]


@dataclass
class Services:
    """Injected objects; whatever is ``None`` comes from the context."""

    policy: "Policy | None" = None
    search: "SearchBackend | None" = None
    image_search: "ImageSearchBackend | None" = None
    skills: SkillLibrary | None = None
    renderer: "Renderer | None" = None
    confine: bool = False
    """Check every run's context as a caller's (``genevolve_graph.core.guard``): for graphs that
    serve callers, such as the one ``langgraph.json`` exposes."""

    def get_policy(self, ctx: AgentContext) -> "Policy":
        return self.policy or _cached("policy", ctx, make_policy)

    def get_search(self, ctx: AgentContext) -> "SearchBackend":
        return self.search or _cached("search", ctx, make_search_backend)

    def get_image_search(self, ctx: AgentContext) -> "ImageSearchBackend":
        return self.image_search or _cached("image_search", ctx, make_image_search_backend)

    def get_skills(self, ctx: AgentContext) -> SkillLibrary:
        return self.skills or load_skills(ctx.skills_dir)

    def get_renderer(self, ctx: AgentContext) -> "Renderer":
        return self.renderer or _cached("renderer", ctx, make_renderer)

    # Async getters for the async nodes: the same objects, built off the event loop.

    async def aget_policy(self, ctx: AgentContext) -> "Policy":
        return self.policy or await _acached("policy", ctx, make_policy)

    async def aget_search(self, ctx: AgentContext) -> "SearchBackend":
        return self.search or await _acached("search", ctx, make_search_backend)

    async def aget_image_search(self, ctx: AgentContext) -> "ImageSearchBackend":
        return self.image_search or await _acached("image_search", ctx, make_image_search_backend)

    async def aget_skills(self, ctx: AgentContext) -> SkillLibrary:
        return self.skills or await _acached("skills", ctx, lambda c: load_skills(c.skills_dir))

    async def aget_renderer(self, ctx: AgentContext) -> "Renderer":
        return self.renderer or await _acached("renderer", ctx, make_renderer)
