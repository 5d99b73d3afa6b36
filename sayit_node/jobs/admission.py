"""Bounded queued work: audio this node has accepted and not finished yet, per node and per client.

A job holds its audio seconds here from the moment its length is known (before decoding)
until it ends; a client is an API key or a remote address. One job always fits in an empty
queue, so a recording longer than a bound is never refused forever. Jobs that end on this node
leave at once; jobs finished elsewhere (a peer in the cluster) are found by asking the store
when a bound would be passed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

from .records import TERMINAL
from .store import JobStore


@dataclass
class QueueFull(Exception):
    scope: str  # "node" or "client"
    queued: float  # seconds already queued in that scope
    limit: float  # seconds
    retry_after: int  # seconds


class QueuedAudio:
    def __init__(self, node_limit: float, client_limit: float, speed: Callable[[], float]) -> None:
        self.node_limit = node_limit
        self.client_limit = client_limit
        self.speed = speed  # audio seconds per wall second, for Retry-After
        self._held: dict[object, tuple[str, float]] = {}  # job id (or a reservation number) -> (client, seconds)
        self._numbers = count()

    def queued(self, client: str | None = None) -> float:
        return sum(s for c, s in self._held.values() if client is None or c == client)

    def _refusal(self, client: str, seconds: float) -> QueueFull | None:
        for scope, queued, limit in (("client", self.queued(client), self.client_limit),
                                     ("node", self.queued(), self.node_limit)):
            if queued > 0 and queued + seconds > limit:
                wait = (queued + seconds - limit) / max(self.speed(), 0.1)
                return QueueFull(scope, queued, limit, int(min(3600, max(1, math.ceil(wait)))))
        return None

    async def _prune(self, store: JobStore) -> None:
        for key in [k for k in self._held if isinstance(k, str)]:
            job = await store.get_job(key)
            if job is None or job.status in TERMINAL:
                self._held.pop(key, None)

    async def reserve(self, store: JobStore, client: str, seconds: float, *, hold: bool = True) -> int:
        """Hold `seconds` for `client`, or raise QueueFull. Returns a reservation number.

        `hold=False` only checks (a cheap refusal before an upload is even read).
        """
        if self._refusal(client, seconds) is not None:
            await self._prune(store)  # peers may have finished some of our jobs
        refusal = self._refusal(client, seconds)
        if refusal is not None:
            raise refusal
        number = next(self._numbers)
        if hold:
            self._held[number] = (client, seconds)
        return number

    def bind(self, number: int, job_id: str) -> None:
        held = self._held.pop(number, None)
        if held is not None:
            self._held[job_id] = held

    def release(self, key: object) -> None:
        """A reservation that did not become a job, or a job that ended."""
        self._held.pop(key, None)
