"""Which nodes are alive, from heartbeat keys in the federation's Redis.

Every node publishes its ``/api/nodes`` entry (id, name, state, engine, model, cores, load,
lastSeen, url, protocol) about once a second under ``{prefix}node:{id}`` with a short TTL. A
node that dies without a goodbye disappears when its key expires (within the TTL), unlike an
mDNS cache entry; a clean stop deletes the key at once. An index set ``{prefix}nodes`` keeps
listing O(nodes) instead of scanning the keyspace; ids whose key expired are pruned from it
atomically while listing.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from .redis_tls import PinnedSSLConnection, pinned_fingerprint

__all__ = ["NodeRegistry", "make_redis_client"]


def make_redis_client(url: str, *, retries: int = 20, socket_timeout: float | None = 30.0) -> aioredis.Redis:
    """A redis.asyncio client for the federation's Redis that rides out a Redis restart.

    Commands that hit a dropped connection reconnect and retry with back-off (capped at 1 s;
    with ``retries=20`` about 15-20 s, enough for a restart that reloads an AOF);
    ``BusyLoadingError`` (Redis still loading its data) is retried too. Responses stay bytes
    (the job store keeps binary chunk audio). Lua scripts registered on it survive the restart:
    redis-py reloads a script on NOSCRIPT. A ``rediss://`` URL with ``ssl_fingerprint=`` is pinned
    to that certificate, checked before AUTH (see :mod:`.redis_tls`).
    """
    client = aioredis.Redis.from_url(
        url,
        decode_responses=False,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[ConnectionError, TimeoutError, BusyLoadingError],
        health_check_interval=5,
        socket_connect_timeout=5.0,
        socket_timeout=socket_timeout,
        socket_keepalive=True,
    )
    if pinned_fingerprint(url):
        # rediss://...?ssl_fingerprint=HEX: only the Redis holding that certificate gets AUTH.
        client.connection_pool.connection_class = PinnedSSLConnection
    return client

# KEYS: none. ARGV: prefix. Returns the JSON of every live node; prunes dead ids from the index.
_LIVE = r"""
local P = ARGV[1]
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  local v = redis.call('GET', P .. 'node:' .. id)
  if v then out[#out + 1] = v else redis.call('SREM', P .. 'nodes', id) end
end
return out
"""


class NodeRegistry:
    def __init__(self, redis_url_or_client: str | aioredis.Redis, node_id: str, key_prefix: str = "sayit:") -> None:
        if isinstance(redis_url_or_client, str):
            self._r = make_redis_client(redis_url_or_client)
            self._own_client = True
        else:
            self._r = redis_url_or_client
            self._own_client = False
        self.node_id = node_id
        self.prefix = key_prefix
        self._key = f"{key_prefix}node:{node_id}"
        self._index = f"{key_prefix}nodes"
        self._live = self._r.register_script(_LIVE)

    async def publish(self, description: dict[str, Any], ttl: float = 5.0) -> None:
        """Store this node's description for `ttl` seconds (call it every ~1 s)."""
        data = dict(description)
        data.setdefault("id", self.node_id)
        data.setdefault("lastSeen", time.time())
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.set(self._key, json.dumps(data), px=max(1, int(ttl * 1000)))
            pipe.sadd(self._index, self.node_id)
            await pipe.execute()

    async def live_nodes(self) -> list[dict[str, Any]]:
        """Every node whose heartbeat has not expired (this one included), sorted by id."""
        raw = await self._live(args=[self.prefix])
        nodes = []
        for value in raw:
            try:
                nodes.append(json.loads(value))
            except ValueError:
                continue
        return sorted(nodes, key=lambda n: str(n.get("id", "")))

    async def alive_elsewhere(self, window: float = 2.5) -> dict[str, Any] | None:
        """Is another live process publishing under this node id? Its entry, else None.

        A heartbeat left by this node's own earlier run (killed, restarted within the TTL) stops
        changing; a live process republishes every second. So watch the key for `window`
        seconds: changed means alive elsewhere. Costs nothing when the key is absent.
        """
        first = await self._r.get(self._key)
        if first is None:
            return None
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            now = await self._r.get(self._key)
            if now is None:
                return None  # it said goodbye or expired
            if now != first:
                try:
                    return json.loads(now)
                except ValueError:
                    return {"id": self.node_id}
        return None

    async def remove(self) -> None:
        """Graceful goodbye: peers stop listing this node at once."""
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(self._key)
            pipe.srem(self._index, self.node_id)
            await pipe.execute()

    async def close(self) -> None:
        """Close the client if this registry created it."""
        if self._own_client:
            await self._r.aclose()
