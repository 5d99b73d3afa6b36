"""Container health checks: `python -m sayit_node.healthcheck [node|worker]`.

- node (default): GET http://127.0.0.1:$PORT/api/health answers 200 (the model is loaded).
- worker: a worker serves no HTTP; it is healthy while its heartbeat key is alive in the cluster's
  Redis (the same key `/api/nodes` lists, refreshed every second, expiring a few seconds after the
  process stops renewing it). Its id is the one the worker keeps in its data directory.

Exit 0 when healthy, 1 with one line on stderr otherwise. Used by the Dockerfile's HEALTHCHECK,
compose and the Kubernetes probes; standard library + redis only, so it starts quickly.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def check_node(port: int, timeout: float = 4.0) -> str | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/health")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(request, timeout=timeout) as resp:
            return None if resp.status == 200 else f"/api/health answered {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"/api/health answered {exc.code}"
    except OSError as exc:
        return f"no node on 127.0.0.1:{port} ({exc})"


def check_worker(redis_url: str | None, data_dir: Path, timeout: float = 4.0) -> str | None:
    if not redis_url:
        return "no REDIS_URL: a worker needs the cluster's Redis"
    try:
        node_id = (data_dir / "node_id").read_text().strip()
    except OSError:
        return f"the worker has not started yet (no {data_dir / 'node_id'})"
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    from .federation.redis_tls import PinnedSyncSSLConnection, pinned_fingerprint

    if pinned_fingerprint(redis_url):  # rediss://...?ssl_fingerprint=: check it before AUTH
        client.connection_pool.connection_class = PinnedSyncSSLConnection
    try:
        alive = client.exists(f"sayit:node:{node_id}")
    except redis.RedisError as exc:
        return f"cannot reach Redis ({exc.__class__.__name__}: {exc})"
    finally:
        client.close()
    return None if alive else f"worker {node_id} has no live heartbeat in Redis"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    role = argv[0] if argv else "node"
    if role not in ("node", "worker"):
        print("usage: python -m sayit_node.healthcheck [node|worker]", file=sys.stderr)
        return 2
    from .config import load_settings

    settings = load_settings()
    if role == "node":
        problem = check_node(int(os.environ.get("PORT") or settings.port))
    else:
        problem = check_worker(settings.effective_redis_url, Path(settings.data_dir))
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
