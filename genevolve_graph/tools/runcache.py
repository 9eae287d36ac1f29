"""A per-run cache of search results keyed by (backend, query, top_k).

Policies repeat queries, within a trajectory and across the trajectories of a batch; a
repeat should cost neither money nor time. Results live in process memory for the run
(bounded, least recently used out first); identical queries in flight at the same moment
share one request. Failures are not cached, so a backend that comes back is used again.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class RunCache:
    """Bounded LRU of finished results plus single-flight for calls in progress."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._done: OrderedDict[Hashable, Any] = OrderedDict()
        self._inflight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, asyncio.Future[Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._done.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._done)

    async def get_or_compute(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """The cached value for ``key``, else ``await compute()`` once and remember it."""
        if key in self._done:
            self._done.move_to_end(key)
            self.hits += 1
            return self._done[key]
        inflight = self._inflight.setdefault(asyncio.get_running_loop(), {})
        task = inflight.get(key)
        if task is not None:
            self.hits += 1
        else:
            self.misses += 1
            task = asyncio.ensure_future(compute())
            inflight[key] = task
            task.add_done_callback(lambda t: self._settle(inflight, key, t))
        # A caller that is cancelled leaves the shared request running for the others.
        return await asyncio.shield(task)

    def _settle(self, inflight: dict[Hashable, "asyncio.Future[Any]"], key: Hashable, task: "asyncio.Future[Any]") -> None:
        inflight.pop(key, None)
        if task.cancelled() or task.exception() is not None:  # exception() marks it retrieved
            return
        self._done[key] = task.result()
        self._done.move_to_end(key)
        while len(self._done) > self.capacity:
            self._done.popitem(last=False)


RUN_CACHE = RunCache()
"""The process-wide cache the web backends share (``RUN_CACHE.clear()`` starts afresh)."""
