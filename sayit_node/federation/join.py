"""Join the cluster's Redis found over mDNS, without trusting the network.

Candidates are peers whose *signed* advert says they host Redis; the address, TLS port and
certificate fingerprint all come from inside the signature. Each candidate is tried once with
a pinned TLS connection (:mod:`.redis_tls`): a server with another certificate gets no AUTH
and is skipped (logged once), so an unreachable or fake Redis never stops a node from starting
-- it keeps looking until the deadline, then runs standalone.

An open cluster (no secret) has unsigned adverts: it only joins a Redis on this machine.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import ConnectionError as RedisConnectionError

from .cluster_keys import ClusterKeys
from .discovery import Discovery
from .redis_tls import CertificateMismatch, pinned_url

__all__ = ["find_cluster_redis", "probe_redis"]

log = logging.getLogger(__name__)


async def probe_redis(url: str, timeout: float = 3.0) -> None:
    """One pinned connection + PING, no retries; raises on any failure."""
    from .registry import make_redis_client

    client = make_redis_client(url, retries=0, socket_timeout=timeout)
    try:
        await asyncio.wait_for(client.ping(), timeout)
    except RedisConnectionError as exc:
        if isinstance(exc.__cause__, CertificateMismatch):  # redis-py wraps it
            raise exc.__cause__ from None
        raise
    finally:
        await client.aclose()


async def find_cluster_redis(discovery: Discovery, keys: ClusterKeys, wait: float) -> str | None:
    deadline = time.monotonic() + wait
    failed: set[tuple[str, str, int, str]] = set()
    while True:
        for peer in discovery.peers(include_down=False).values():
            a = peer.advert
            if not (peer.compatible and a.hosts_redis and a.redis_port and a.cert_fingerprint and peer.address):
                continue
            if keys.open and not peer.address.startswith("127."):
                continue
            key = (a.node_id, peer.address, a.redis_port, a.cert_fingerprint)
            if key in failed:
                continue
            url = pinned_url(peer.address, a.redis_port, keys.redis_password, a.cert_fingerprint)
            try:
                await probe_redis(url)
            except Exception as exc:
                failed.add(key)
                log.warning("not joining the Redis advertised by %s at %s:%d: %s", a.name or a.node_id,
                            peer.address, a.redis_port, exc)
                continue
            log.info("joining the cluster Redis hosted by %s at %s:%d (TLS, certificate pinned)",
                     a.name or a.node_id, peer.address, a.redis_port)
            return url
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.2)
