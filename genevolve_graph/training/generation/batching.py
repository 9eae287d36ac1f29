"""Micro-batching of concurrent trajectories' generation requests (in-process backends).

Trajectories run concurrently (the tools of one overlap the generation of others); requests
that arrive while the backend is busy are batched into its next call, which runs in a worker
thread so the event loop keeps executing tools. Subclasses implement ``_generate_batch``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from genevolve_graph.training.generation.base import Generation, GenerationError


@dataclass
class Pending:
    """One request waiting for the next batch."""

    prompt_ids: list[int]
    max_new_tokens: int
    future: asyncio.Future
    images: list[str] | None = None
    """The prompt's images in token order (data URIs), for a backend that takes them."""


class MicroBatchingGenerator:
    """A ``TokenGenerator`` that batches concurrent requests into ``_generate_batch`` calls."""

    backend = "in-process"

    def __init__(self, *, max_batch_size: int = 64) -> None:
        self.max_batch_size = max_batch_size
        self._queue: list[Pending] = []
        self._worker: asyncio.Task | None = None
        self.calls = 0

    def accepts_images(self) -> bool:
        """Whether ``_generate_batch`` turns a prompt's images into pixel values (a VLM backend)."""
        return False

    async def generate(self, prompt_ids: list[int], max_new_tokens: int, *, images: list[str] | None = None) -> Generation:
        if images and not self.accepts_images():
            raise GenerationError(f"the prompt holds images but the {self.backend} generator cannot turn them into pixel values")
        loop = asyncio.get_running_loop()
        pending = Pending(list(prompt_ids), max_new_tokens, loop.create_future(), list(images) if images else None)
        self._queue.append(pending)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        while self._queue:
            for _ in range(3):  # let concurrent trajectories that are ready submit too
                await asyncio.sleep(0)
            batch, self._queue = self._queue[: self.max_batch_size], self._queue[self.max_batch_size :]
            try:
                results = await asyncio.to_thread(self._generate_batch, batch)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting trajectory
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(GenerationError(f"{self.backend} generation failed: {type(exc).__name__}: {exc}"))
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

    def _generate_batch(self, batch: list[Pending]) -> list[Generation]:
        raise NotImplementedError
