"""`--host-redis`: run the cluster's redis-server as a child of this node.

AOF on and `noeviction` (an evicting Redis silently drops queued chunks); the password is
derived from the cluster secret. Without a secret it never listens beyond 127.0.0.1: a Redis
on the LAN always has a password.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """Linux: the kernel sends redis-server SIGTERM if its node dies, even by SIGKILL."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RedisUnavailable(Exception):
    pass


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class HostedRedis:
    def __init__(self, *, executable: str, bind_host: str, port: int, password: str | None, data_dir: Path) -> None:
        self.executable = executable
        if password is None and not _is_loopback(bind_host):
            log.warning("no cluster secret: the hosted Redis listens on 127.0.0.1 only")
            bind_host = "127.0.0.1"
        self.bind_host = "127.0.0.1" if bind_host in ("localhost",) else bind_host
        self.port = port
        self.password = password
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.bind_host in ("0.0.0.0", "::") else self.bind_host
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{host}:{self.port}/0"

    async def start(self) -> None:
        path = shutil.which(self.executable)
        if path is None:
            raise RedisUnavailable(
                f"cannot host Redis: '{self.executable}' was not found on PATH; install redis-server "
                "(Debian/Ubuntu: apt install redis-server, macOS: brew install redis) or set SAYIT_REDIS_SERVER"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [path, "--port", str(self.port), "--bind", self.bind_host, "--dir", str(self.data_dir),
                "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", "",
                "--protected-mode", "no" if self.password else "yes"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(100):
                if self.proc.poll() is not None:
                    raise RedisUnavailable(f"redis-server exited with {self.proc.returncode} (port {self.port} taken?)")
                try:
                    await client.ping()
                    log.info("hosting Redis on %s:%d (AOF, noeviction)", self.bind_host, self.port)
                    return
                except Exception:
                    await asyncio.sleep(0.1)
            raise RedisUnavailable("redis-server did not answer within 10 s")
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
