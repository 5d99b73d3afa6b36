"""A taskiq broker whose queue is SayIt's job store.

Chunks are written to the job store (SQLite standalone, Redis in a cluster) before anyone is
told about them, so the store already *is* the queue: `kick()` only wakes this process's
listener, and `listen()` claims the fairest next chunk from the store (round-robin across
jobs, with a lease in Redis) and hands it to taskiq's receiver as an ackable message for the
task `sayit.transcribe_chunk(job_id, chunk_index)`. The ack means "this delivery ended" (the
task has already recorded the chunk's result or failure in the store).

Run with taskiq's receiver and `max_prefetch=0`: it asks for the next message only when one
of its `max_async_tasks` slots is free, so a node claims exactly as many chunks as it can run
(pull-based: faster nodes take more, nobody hoards). Measured reasons for not using
taskiq-redis' stream broker are in docs/architecture.md.

This module is plumbing: it knows how to claim a chunk only through the `claim` callable it
is given, never the job store itself (queue sits below jobs in the import floors).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable

from taskiq import AckableMessage, AsyncBroker, BrokerMessage, TaskiqMessage

log = logging.getLogger(__name__)

CHUNK_TASK_NAME = "sayit.transcribe_chunk"
POLL_INTERVAL = 1.0  # retries become due by time and peers add jobs: look again this often

Claim = Callable[[], Awaitable[tuple[str, int] | None]]


class StoreBroker(AsyncBroker):
    def __init__(self, claim: Claim, *, poll_interval: float = POLL_INTERVAL) -> None:
        super().__init__()
        self._claim = claim
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self.in_flight: set[tuple[str, int]] = set()  # delivered and not yet acked

    def wake(self) -> None:
        """New work may be in the store (a job was submitted, a chunk was handed back)."""
        self._wake.set()

    async def kick(self, message: BrokerMessage) -> None:
        # Chunk tasks are created by storing the job; a kick only says "look now".
        self.wake()

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        failing = False
        while True:
            try:
                claimed = await self._claim()
            except Exception as exc:  # the store is unreachable (Redis gone): keep listening
                if not failing:
                    log.warning("cannot claim chunks (%s: %s); retrying every %.0f s", type(exc).__name__,
                                str(exc).splitlines()[0][:200] if str(exc) else "", self._poll_interval)
                failing = True
                await asyncio.sleep(self._poll_interval)
                continue
            if failing:
                log.info("claiming chunks again")
                failing = False
            if claimed is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
                except TimeoutError:
                    pass
                continue
            self.in_flight.add(claimed)
            yield AckableMessage(data=self._message(*claimed), ack=self._acker(claimed))

    def _message(self, job_id: str, index: int) -> bytes:
        message = TaskiqMessage(task_id=uuid.uuid4().hex, task_name=CHUNK_TASK_NAME, labels={},
                                args=[job_id, index], kwargs={})
        return self.formatter.dumps(message).message

    def _acker(self, claimed: tuple[str, int]) -> Callable[[], None]:
        def ack() -> None:
            self.in_flight.discard(claimed)
            self.wake()  # a slot is free: the next chunk may be waiting

        return ack
