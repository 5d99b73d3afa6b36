"""A real, private redis-server for tests: free 127.0.0.1 port, its own temp dir, never 6379.

    from tests.redis_fixture import redis_server, start_redis   # in conftest.py

`start_redis(tmp_dir, appendonly=..., password=..., maxmemory_policy=...)` returns a started
:class:`RedisServer` (also a context manager that stops it); `restart()` stops and starts it
again on the same port and directory (with AOF, the data survives). The session fixture
`redis_server` is one plain server (noeviction, no AOF) shared by a test session; tests keep
apart by using their own key prefix.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
_FORBIDDEN_PORTS = {6379}

__all__ = ["RedisServer", "free_redis_port", "redis_server", "start_redis"]


def free_redis_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _FORBIDDEN_PORTS:
            return port


def _ping(port: int, password: str | None, timeout: float = 0.5) -> bool:
    """True when the server answers PING (raw RESP, so no client library state is involved)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if password:
                s.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n".encode())
                if not s.recv(64).startswith(b"+OK"):
                    return False
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, tmp_dir: Path, *, appendonly: bool = False, password: str | None = None,
                 maxmemory_policy: str = "noeviction", port: int | None = None) -> None:
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.password = password
        self.maxmemory_policy = maxmemory_policy
        self.port = port or free_redis_port()
        if self.port in _FORBIDDEN_PORTS:
            raise ValueError("tests never use the machine's Redis port")
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "redis.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--maxmemory-policy", self.maxmemory_policy, "--daemonize", "no", "--logfile", "",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            if _ping(self.port, self.password):
                return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"redis-server not answering after {timeout}s:\n{self.log.read_text()[-2000:]}")

    def stop(self, *, hard: bool = False) -> None:
        """SIGTERM (Redis flushes its AOF and exits) or, with `hard`, SIGKILL."""
        if self.proc and self.proc.poll() is None:
            if hard:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, *, hard: bool = False, pause: float = 0.0) -> "RedisServer":
        self.stop(hard=hard)
        if pause:
            time.sleep(pause)
        return self.start()

    def __enter__(self) -> "RedisServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_redis(tmp_dir: Path, *, appendonly: bool = False, password: str | None = None,
                maxmemory_policy: str = "noeviction") -> RedisServer:
    """Start a private redis-server (no RDB snapshots) and wait until it answers PING."""
    return RedisServer(tmp_dir, appendonly=appendonly, password=password,
                       maxmemory_policy=maxmemory_policy).start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One private redis-server for the test session (noeviction, no AOF)."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
