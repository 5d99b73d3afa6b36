"""`--host-redis`: run the cluster's redis-server as a child of this node.

AOF on and `noeviction` (an evicting Redis silently drops queued chunks); the password is
derived from the cluster secret. Without a secret it never listens beyond 127.0.0.1: a Redis
on the LAN always has a password. It speaks TLS only, with a self-signed certificate kept in the
data directory whose fingerprint the node's signed advert carries (see redis_tls.py): clients,
this node included, check that fingerprint before they send the password.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ..datadir import private_dir
from .redis_tls import write_private, ensure_certificate, pinned_url

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """Linux: the kernel sends redis-server SIGTERM if its node dies, even by SIGKILL."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_setup() -> None:
    """In the redis-server child: its AOF files are the cluster's audio and transcripts (0600)."""
    os.umask(0o077)
    if sys.platform == "linux":
        _die_with_parent()


class RedisUnavailable(Exception):
    pass


# A Mac app started from Finder or a LaunchAgent gets PATH=/usr/bin:/bin:/usr/sbin:/sbin, without
# Homebrew's bin directory: look where `brew install redis` puts redis-server (Apple silicon, Intel).
HOMEBREW_REDIS = (
    "/opt/homebrew/bin/redis-server",
    "/opt/homebrew/opt/redis/bin/redis-server",
    "/usr/local/bin/redis-server",
    "/usr/local/opt/redis/bin/redis-server",
)

WINDOWS_NO_REDIS = (
    "Windows has no native redis-server, so this PC cannot host the cluster's Redis. Host it on "
    "the Mac mini or a Linux machine (\"Host it here\" there, or `sayit-node serve --host-redis`) "
    "and choose \"Find automatically\" here, or point this node at a Redis URL "
    "(Redis in WSL or Docker, or Memurai)."
)


def hosting_problem(platform: str | None = None) -> str | None:
    """Why this platform cannot host Redis at all (None if it can, given a redis-server)."""
    return WINDOWS_NO_REDIS if (platform or sys.platform).startswith("win") else None


def find_redis_server(executable: str = "redis-server", *, platform: str | None = None,
                      which=shutil.which, is_executable=None) -> str | None:
    """`executable` on PATH (or as given, if it is a path); on macOS also Homebrew's places."""
    is_executable = is_executable or (lambda p: os.path.isfile(p) and os.access(p, os.X_OK))
    found = which(executable)
    if found:
        return found
    if os.path.basename(executable) != executable:
        return executable if is_executable(executable) else None
    if (platform or sys.platform) == "darwin" and executable == "redis-server":
        return next((p for p in HOMEBREW_REDIS if is_executable(p)), None)
    return None


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
        self.cert_fingerprint = ""

    @property
    def url(self) -> str:
        """rediss:// URL pinned to this Redis' certificate (known once started)."""
        host = "127.0.0.1" if self.bind_host in ("0.0.0.0", "::") else self.bind_host
        return pinned_url(host, self.port, self.password, self.cert_fingerprint)

    async def start(self) -> None:
        path = find_redis_server(self.executable)
        if path is None:
            if problem := hosting_problem():
                raise RedisUnavailable(f"cannot host Redis: {problem}")
            raise RedisUnavailable(
                f"cannot host Redis: '{self.executable}' was not found on PATH; install redis-server "
                "(Debian/Ubuntu: apt install redis-server, macOS: brew install redis) or set SAYIT_REDIS_SERVER"
            )
        private_dir(self.data_dir)
        cert, key, self.cert_fingerprint = ensure_certificate(self.data_dir / "tls")
        # The password goes in a 0600 config file, not on the command line (ps shows argv).
        conf = self.data_dir / "sayit-redis.conf"
        write_private(conf, (f"requirepass {self.password}\n" if self.password else "").encode())
        args = [path, str(conf), "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                "--tls-key-file", str(key), "--tls-auth-clients", "no", "--bind", self.bind_host, "--dir", str(self.data_dir),
                "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", "",
                "--protected-mode", "no" if self.password else "yes"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_child_setup if os.name == "posix" else None)
        from .registry import make_redis_client

        client = make_redis_client(self.url, retries=0)
        try:
            for _ in range(100):
                if self.proc.poll() is not None:
                    raise RedisUnavailable(f"redis-server exited with {self.proc.returncode} (port {self.port} taken, or built without TLS?)")
                try:
                    await client.ping()
                    log.info("hosting Redis on %s:%d (TLS only, certificate sha256 %s; AOF, noeviction)",
                             self.bind_host, self.port, self.cert_fingerprint)
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
