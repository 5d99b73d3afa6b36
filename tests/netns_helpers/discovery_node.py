"""A stand-in SayIt node for the discovery tests: Discovery plus a tiny /api/health server.

Run inside a throwaway network namespace only. Prints one JSON object per line on stdout:
  {"event": "ready", ...}                      after Discovery.start() returned
  {"event": "peer", "change": ..., ...}        for every on_change callback
  {"event": "stopped", ...}                    after a graceful stop (SIGTERM/SIGINT)
  {"event": "advert-updated", ...}             after SIGUSR1 (advertises hosts_redis=1)
  {"event": "rejected", ...}                   for every sender of adverts Discovery ignored
Every line carries "t" = time.time() so the test can measure across processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

from sayit_node.federation.discovery import (
    SERVICE_TYPE,
    Discovery,
    NodeAdvert,
)
from sayit_node.federation.cluster_keys import ClusterKeys

from shared import emit


async def health_server(host: str, port: int, node_id: str) -> asyncio.AbstractServer:
    body = json.dumps({"status": "ok", "nodeId": node_id}).encode()  # as /api/health

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if path == b"/api/health":
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                payload = body
            else:
                head = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                payload = b"not found"
            writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload) + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node-id", required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--api-port", type=int, required=True)
    ap.add_argument("--secret", default=None)
    ap.add_argument("--protocol", type=int, default=None)
    ap.add_argument("--dead-after", type=float, default=6.0)
    ap.add_argument("--forget-after", type=float, default=60.0)
    ap.add_argument("--resign", type=float, default=60.0, help="re-sign the advert every N s")
    ap.add_argument("--no-health", action="store_true", help="do not serve /api/health")
    ap.add_argument("--hosts-redis", default=None, metavar="PORT:SHA256",
                    help="advertise a hosted Redis on PORT with this certificate fingerprint")
    ap.add_argument("--answer-as", default=None, help="/api/health names this node id instead")
    ap.add_argument("--trust", action="append", default=[],
                    help="node id the external liveness source reports alive (repeatable)")
    args = ap.parse_args()

    server = None
    if not args.no_health:
        server = await health_server(args.bind, args.api_port, args.answer_as or args.node_id)

    fields = dict(
        node_id=args.node_id,
        name=f"test node {args.node_id}",
        version="0.0-test",
        engine="faster-whisper",
        model="tiny.en",
        cores=2,
        api_port=args.api_port,
    )
    if args.protocol is not None:
        fields["protocol"] = args.protocol
    if args.hosts_redis:
        port, fingerprint = args.hosts_redis.split(":")
        fields.update(hosts_redis=True, redis_port=int(port), cert_fingerprint=fingerprint)
    advert = NodeAdvert(**fields)

    disc: Discovery

    def on_change(event: str, rec) -> None:
        zc = disc.zeroconf
        in_cache = bool(
            zc is not None
            and zc.zeroconf.cache.current_entry_with_name_and_alias(SERVICE_TYPE, rec.service_name)
        )
        emit(
            event="peer",
            change=event,
            node=args.node_id,
            peer=rec.node_id,
            state=rec.state,
            compatible=rec.compatible,
            address=rec.address,
            signed_at=rec.advert.signed_at,
            in_zeroconf_cache=in_cache,
            hosts_redis=rec.advert.hosts_redis,
            redis_port=rec.advert.redis_port,
            peers=sorted(disc.peers()),
        )

    disc = Discovery(
        advert,
        bind_host=args.bind,
        on_change=on_change,
        dead_after=args.dead_after,
        forget_after=args.forget_after,
        liveness_source=(lambda: set(args.trust)) if args.trust else None,
        keys=ClusterKeys.derive(args.secret),
        resign_interval=args.resign,
    )
    t0 = time.time()
    await disc.start()
    emit(
        event="ready",
        node=args.node_id,
        start_seconds=round(time.time() - t0, 3),
        service=disc.service_name,
        signed=not disc.keys.open,
        addresses=list(disc.advert.addresses),
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def start_hosting_redis() -> None:  # what a node does when it starts a Redis
        try:
            new = await disc.update_advert(hosts_redis=True, redis_port=6379)
        except Exception as exc:
            emit(event="error", node=args.node_id, error=repr(exc))
            raise
        emit(event="advert-updated", node=args.node_id, hosts_redis=new.hosts_redis)

    loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(start_hosting_redis()))

    async def report_rejected() -> None:
        told: set[tuple] = set()
        while True:
            for r in disc.rejected():
                if (r.node_id, r.address) not in told:
                    told.add((r.node_id, r.address))
                    emit(event="rejected", node=args.node_id, peer=r.node_id, address=r.address,
                         kind=r.kind, reason=r.reason, message=r.message)
            await asyncio.sleep(0.2)

    reporter = asyncio.ensure_future(report_rejected())
    await stop.wait()
    reporter.cancel()
    await disc.stop()
    if server is not None:
        server.close()
    emit(event="stopped", node=args.node_id)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
