"""The command line's event loop: uvloop unless switched off, the heap frozen for the run only."""

from __future__ import annotations

import asyncio
import gc

import pytest

from genevolve_graph.util import event_loop


def test_uvloop_by_default_and_asyncio_on_request(monkeypatch):
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    monkeypatch.delenv("GENEVOLVE_EVENT_LOOP", raising=False)
    assert event_loop.loop_kind() == "uvloop" and event_loop.run(loop_module()).startswith("uvloop")
    monkeypatch.setenv("GENEVOLVE_EVENT_LOOP", "asyncio")
    assert event_loop.loop_kind() == "asyncio" and event_loop.run(loop_module()).startswith("asyncio")
    monkeypatch.setenv("GENEVOLVE_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="GENEVOLVE_EVENT_LOOP='trio': choose one of uvloop, asyncio"):
        event_loop.run(loop_module())


def test_the_heap_is_frozen_while_the_coroutine_runs_and_released_after():
    async def frozen_count() -> int:
        return gc.get_freeze_count()

    before = gc.get_freeze_count()
    assert event_loop.run(frozen_count()) > before
    assert gc.get_freeze_count() == 0
