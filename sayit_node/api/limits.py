"""Caps on what one node serves at once: uploads in progress and open event streams.

Past a cap the request gets 429 with `Retry-After` at once (clients such as the OpenAI SDK
retry it by themselves) instead of piling up memory, threads and store polling.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import AsyncIterator, Callable

from litestar import Request

from ..jobs.admission import QueueFull
from .errors import ApiError

RETRY_AFTER = 5  # seconds: uploads and streams end within seconds to minutes


class Slots:
    def __init__(self, limit: int, what: str, code: str, setting: str) -> None:
        self.limit = limit
        self.what = what
        self.code = code
        self.setting = setting
        self.used = 0

    def check(self) -> None:
        """Raise 429 when every slot is taken."""
        if self.used >= self.limit:
            raise ApiError(429, f"this node already serves {self.limit} {self.what} (setting {self.setting}); "
                                f"retry in a few seconds", self.code, type="rate_limit_error",
                           headers={"Retry-After": str(RETRY_AFTER)})

    def take(self) -> Callable[[], None]:
        """Take a slot or raise 429; returns the release function (safe to call twice)."""
        self.check()
        self.used += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.used -= 1

        return release


def hold_stream(slots: Slots, events: AsyncIterator) -> AsyncIterator:
    """Serve `events` in a stream slot, given back when the stream ends or is dropped."""
    release = slots.take()

    async def held() -> AsyncIterator:
        try:
            async for event in events:
                yield event
        finally:
            release()

    stream = held()
    weakref.finalize(stream, release)  # a stream never started (client gone at once) has no finally
    return stream


def client_of(request: Request) -> str:
    """Who queued work is counted against: the API key, else the remote address."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:12]
    return request.client.host if request.client else "unknown"


def queue_full_error(exc: QueueFull) -> ApiError:
    whose = "your" if exc.scope == "client" else "this node's"
    setting = "SAYIT_MAX_QUEUED_MINUTES_PER_CLIENT" if exc.scope == "client" else "SAYIT_MAX_QUEUED_MINUTES"
    return ApiError(
        429, f"{whose} queue is full: {exc.queued / 60:.1f} minutes of audio are waiting (limit {exc.limit / 60:g} "
             f"minutes, setting {setting}); retry in about {exc.retry_after} s",
        "queue_full", type="rate_limit_error", headers={"Retry-After": str(exc.retry_after)},
        extra={"queuedMinutes": round(exc.queued / 60, 2), "maxQueuedMinutes": exc.limit / 60},
    )
