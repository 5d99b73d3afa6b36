"""The node's scheduler: claims the fairest next chunk from the store and kicks it.

At most `max_concurrent` chunks are in flight. The store decides fairness (round-robin
across jobs), so a short upload starts as soon as one slot frees up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .store import JobStore

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        store: JobStore,
        kick: Callable[[str, int], Awaitable[None]],
        *,
        worker_id: str,
        models: list[str],
        max_concurrent: int,
    ) -> None:
        self.store = store
        self.kick = kick
        self.worker_id = worker_id
        self.models = models
        self.max_concurrent = max_concurrent
        self.in_flight: set[tuple[str, int]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def wake(self) -> None:
        self._wake.set()

    def chunk_finished(self, job_id: str, index: int) -> None:
        self.in_flight.discard((job_id, index))
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sayit-scheduler")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        while True:
            try:
                while len(self.in_flight) < self.max_concurrent:
                    claimed = await self.store.claim_next_chunk(self.worker_id, self.models)
                    if claimed is None:
                        break
                    self.in_flight.add(claimed)
                    await self.kick(*claimed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler step failed; retrying")
            self._wake.clear()
            try:
                # Also poll: retries become due by time, not by an event.
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                pass
