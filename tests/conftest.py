"""Shared fixtures: real speech (espeak-ng), real node processes on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.speech import PARAGRAPHS, speak_paragraphs, text_of

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    """A real `sayit-node serve` child process with its own data directory."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = home / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "SAYIT_DATA_DIR": str(home / "data"),
            "SAYIT_LOG_DIR": str(home / "logs"),
            "SAYIT_CONFIG_FILE": str(home / "config.toml"),
            "WHISPER_CACHE_DIR": str(home / "models"),
            "MAX_CONCURRENT_CHUNKS": "2",
            "SAYIT_DISCOVERY": "off",  # federation tests turn it on, inside their own namespaces
            "TMPDIR": str(self.tmp),
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.log = home / "node.log"
        self.command_prefix: list[str] = []  # run the node under another command (a namespace)

    def start(self, timeout: float = 60) -> "NodeProcess":
        self.proc = subprocess.Popen(
            [*self.command_prefix, sys.executable, "-m", "sayit_node", "serve"], env=self.env, cwd=self.home,
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"node not healthy after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 300), **kwargs)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class PeakRss:
    """Samples a process's resident memory every 20 ms while the `with` block runs.

    `peak` is the process's own; with `children=True`, `peak_tree` adds its child processes' RSS
    (sampled at the same instants) and `children_seen` holds their pids.
    """

    def __init__(self, pid: int, *, children: bool = False) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._children = children
        self.before = self.peak = self.peak_tree = self._process.memory_info().rss
        self.children_seen: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._done.is_set():
            try:
                own = self._process.memory_info().rss
                total = own
                for child in self._process.children(recursive=True) if self._children else ():
                    try:
                        total += child.memory_info().rss
                        self.children_seen.add(child.pid)
                    except psutil.Error:
                        pass
            except psutil.Error:
                return  # the process is gone
            self.peak = max(self.peak, own)
            self.peak_tree = max(self.peak_tree, total)
            time.sleep(0.02)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 2**20


def assert_schema(client: httpx.Client, path: str, method: str, status: int, body) -> None:
    """`body` validates against the node's own OpenAPI for that route and status."""
    import jsonschema

    spec = client.get("/schema/openapi.json").json()
    content = spec["paths"][path][method]["responses"][str(status)]["content"]
    jsonschema.validate(body, {**content["application/json"]["schema"], "components": spec["components"]})


def submit_job(client: httpx.Client, path: Path) -> str:
    """Upload `path` as an async job; returns its id."""
    response = client.post("/api/transcribe", files={"audio": path.open("rb")}, data={"async": "true"})
    assert response.status_code == 202, response.text
    return response.json()["jobId"]


def wait_job(client: httpx.Client, job_id: str, timeout: float = 300) -> dict:
    """Poll until the job is completed, failed or cancelled (tolerating a node restarting or its
    cluster's Redis being away: 503 cluster_unavailable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = client.get(f"/api/jobs/{job_id}")
            job = response.json()
        except (httpx.HTTPError, ValueError):
            time.sleep(0.2)
            continue
        if response.status_code == 503:  # the cluster's Redis is away for a moment
            time.sleep(0.2)
            continue
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise TimeoutError(job_id)


@pytest.fixture
def node_factory(tmp_path):
    """Start real nodes: `node_factory(env={...}, home=path)`; all are stopped afterwards."""
    nodes: list[NodeProcess] = []

    def make(env: dict[str, str] | None = None, home: Path | None = None, start: bool = True) -> NodeProcess:
        node = NodeProcess(home or tmp_path / f"node{len(nodes)}", env)
        nodes.append(node)
        return node.start() if start else node

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture
def redis(tmp_path):
    """A real redis-server with AOF and the password `s3cret`, on loopback; stopped afterwards."""
    from tests.redis_fixture import start_redis

    server = start_redis(tmp_path / "redis", appendonly=True, password="s3cret")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def short_speech(speech_dir) -> tuple[Path, str]:
    """About 15 s of English speech and its text."""
    paragraphs = PARAGRAPHS[:1]
    return speak_paragraphs(paragraphs, speech_dir / "short.wav"), text_of(paragraphs)


@pytest.fixture(scope="session")
def minute_speech(speech_dir) -> tuple[Path, str]:
    """About 60 s of English speech (several chunks) and its text."""
    paragraphs = PARAGRAPHS[:4]
    return speak_paragraphs(paragraphs, speech_dir / "minute.wav"), text_of(paragraphs)


@pytest.fixture(scope="session")
def all_speech(speech_dir) -> tuple[Path, str]:
    """All paragraphs, about 3 minutes."""
    return speak_paragraphs(PARAGRAPHS, speech_dir / "all.wav"), text_of(PARAGRAPHS)
