"""Is the cluster's Redis reachable? One cheap PING a second, on a client of its own.

The job store's client retries a dropped connection for ~15-20 s (so a Redis restart never
loses a result); that is right for the workers and wrong for the API, where a user waits. The
link answers at once instead: while it is down the node refuses uploads with 503
`cluster_unavailable`, reports "degraded" on `/api/health`, and its background loops
(heartbeat, leases, reaper) pause without logging a traceback a second. It logs one line when
Redis goes away and one when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

from redis.exceptions import AuthenticationError, RedisError, ResponseError

from .registry import make_redis_client

log = logging.getLogger(__name__)

__all__ = ["ClusterLink", "StartupError", "check_redis", "redis_address", "describe_redis_error"]

CHECK_INTERVAL = 1.0
CHECK_TIMEOUT = 2.0


def redis_address(url: str) -> str:
    """host:port of a Redis URL, without the password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    except ValueError:
        return "(unparsable REDIS_URL)"


def describe_redis_error(exc: BaseException) -> str:
    """One line for a Redis failure: what happened, no traceback, no password."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and not str(exc).strip():
        return "timed out without an answer"
    if isinstance(exc, (ConnectionRefusedError, OSError)) and not isinstance(exc, RedisError):
        return text
    if "Connect call failed" in text or "Error 111" in text:
        return "connection refused"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or "Timeout" in type(exc).__name__:
        return "timed out without an answer"
    return text.splitlines()[0][:200].rstrip(".")


class StartupError(RuntimeError):
    """The node cannot start as configured; the message says what to change (one line)."""


START_TIMEOUT = 5.0


async def check_redis(url: str, *, configured: bool, timeout: float = START_TIMEOUT) -> None:
    """At start: PING the cluster's Redis once, without retries, within `timeout` seconds.

    A wrong or missing password, a refused connection or silence ends the start with a
    StartupError that names the address and the setting to change, instead of a node that
    waits forever (or 20 s of reconnect attempts per command).
    """
    address = redis_address(url)
    has_password = bool(urlsplit(url).password)
    if configured:
        fix = f"set REDIS_URL to redis://:PASSWORD@{address}/0 with the password of that Redis (its requirepass)"
    else:
        fix = "set SAYIT_CLUSTER_SECRET to the same secret as the node that hosts it"
    log.info("connecting to the cluster's Redis at %s", address)
    client = make_redis_client(url, retries=0, socket_timeout=timeout)
    try:
        await asyncio.wait_for(client.ping(), timeout=timeout + 1)
    except (AuthenticationError, ResponseError) as exc:
        text = str(exc)
        if isinstance(exc, AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text or "auth" in text.lower():
            what = f"refused the password ({describe_redis_error(exc)})" if has_password else "needs a password"
            raise StartupError(f"the cluster's Redis at {address} {what}: {fix}") from None
        raise StartupError(f"cannot use the cluster's Redis at {address}: {describe_redis_error(exc)}") from None
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        where = "REDIS_URL" if configured else "the advert of the node hosting it"
        raise StartupError(f"cannot reach the cluster's Redis at {address} ({describe_redis_error(exc)}): "
                           f"is it running, and is {where} right?") from None
    finally:
        await client.aclose()


class ClusterLink:
    """Watches the cluster's Redis; `problem` is None while it answers, else a one-line reason."""

    def __init__(self, url: str, *, interval: float = CHECK_INTERVAL, timeout: float = CHECK_TIMEOUT) -> None:
        self.address = redis_address(url)
        self.interval = interval
        self._r = make_redis_client(url, retries=0, socket_timeout=timeout)  # TLS pinning as the store
        self.problem: str | None = None
        self.down_since: float | None = None
        self.outages = 0
        self.changed = asyncio.Event()  # set on every up/down transition

    @property
    def ok(self) -> bool:
        return self.problem is None

    def message(self) -> str:
        """What an API answer says while the link is down."""
        return (f"the cluster's Redis at {self.address} is unavailable ({self.problem}); "
                "this node accepts new work again when it is back")

    async def check(self) -> bool:
        try:
            await asyncio.wait_for(self._r.ping(), timeout=self.interval * 3)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            reason = describe_redis_error(exc)
            if isinstance(exc, (AuthenticationError, ResponseError)) and "auth" in str(exc).lower():
                reason = f"it refused our password ({describe_redis_error(exc)})"
            self._down(reason)
            return False
        self._up()
        return True

    def _down(self, reason: str) -> None:
        if self.problem is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.warning("lost the cluster's Redis at %s: %s; refusing new uploads until it is back",
                        self.address, reason)
            self.changed.set()
        self.problem = reason

    def _up(self) -> None:
        if self.problem is not None:
            gone = time.monotonic() - (self.down_since or time.monotonic())
            log.info("the cluster's Redis at %s is back after %.1f s", self.address, gone)
            self.problem = None
            self.down_since = None
            self.changed.set()

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        await self._r.aclose()
