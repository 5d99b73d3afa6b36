"""Fixtures for the desktop tests: offscreen Qt, an isolated node environment, real nodes."""

from __future__ import annotations

import os

# Before anything imports Qt: no display needed (the Xvfb test sets up its own).
os.environ["QT_QPA_PLATFORM"] = "offscreen"

import gc  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import psutil  # noqa: E402
import pytest  # noqa: E402

from .helpers import REPO, free_port, wait_for, write_config  # noqa: E402


@pytest.fixture(autouse=True)
def collect_on_the_main_thread():
    """Qt objects must be deleted on the UI thread, but Python's cyclic collector runs on
    whichever thread allocates (the HTTP workers too). As in the app: collect here only."""
    was = gc.isenabled()
    gc.disable()
    yield
    gc.collect()
    if was:
        gc.enable()

# Environment names that would change what a test node does; cleared for every test.
NODE_ENV_PREFIXES = ("SAYIT_",)
NODE_ENV_NAMES = ("HOST", "PORT", "ALLOWED_ORIGINS", "MAX_CONCURRENT_CHUNKS", "WORKER_ID",
                  "WHISPER_CACHE_DIR", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD")


@dataclass
class NodeEnv:
    root: Path
    config: Path
    data_dir: Path
    log_dir: Path
    port: int

    def env(self) -> dict[str, str]:
        """The environment of a separate process (tray app) in this setup."""
        return dict(os.environ)


@pytest.fixture
def node_env(tmp_path, monkeypatch) -> NodeEnv:
    """SAYIT_CONFIG_FILE/DATA_DIR/LOG_DIR in tmp_path, a free port in config.toml, no mDNS
    discovery and no stray SayIt variables; the working directory (where a node looks for
    .env) is tmp_path."""
    for name in list(os.environ):
        if name.startswith(NODE_ENV_PREFIXES) or name.upper() in NODE_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
    env = NodeEnv(root=tmp_path, config=tmp_path / "config" / "config.toml",
                  data_dir=tmp_path / "data", log_dir=tmp_path / "logs", port=free_port())
    monkeypatch.setenv("SAYIT_CONFIG_FILE", str(env.config))
    monkeypatch.setenv("SAYIT_DATA_DIR", str(env.data_dir))
    monkeypatch.setenv("SAYIT_LOG_DIR", str(env.log_dir))
    monkeypatch.setenv("SAYIT_MIN_FREE_DISK_MB", "0")
    monkeypatch.setenv("WORKER_ID", "test-node")
    # No mDNS: test nodes must not find each other (or anyone else's); peers come from Redis.
    monkeypatch.setenv("SAYIT_DISCOVERY", "false")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.chdir(tmp_path)
    write_config(env.config, f"port = {env.port}\nmax_concurrent_chunks = 1\n")
    return env


def real_node_missing() -> str | None:
    for name in ("cli.py", "__main__.py", "server.py"):
        if not (REPO / "sayit_node" / name).is_file():
            return f"the node is not built yet (sayit_node/{name} missing)"
    return None


@pytest.fixture
def real_node():
    reason = real_node_missing()
    if reason:
        pytest.fail(reason)


@pytest.fixture
def supervisors():
    """Supervisors made by a test; each is stopped (blocking) at teardown: no orphans."""
    made = []

    def make(**kwargs):
        from sayit_desktop.supervisor import Supervisor

        kwargs.setdefault("stop_timeout", 8.0)
        sup = Supervisor(**kwargs)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        pid = sup.pid
        sup.stop_now(timeout=5.0)
        if pid is not None:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.fixture
def spawned():
    """Processes a test starts by hand; killed at teardown if still alive."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


SPEECH = (
    "The quick brown fox jumps over the lazy dog near the river bank. "
    "Speech recognition turns spoken words into written text for people who need it. "
    "Every node in the cluster takes a chunk of audio and sends back the words it heard. "
    "When the last chunk is done the transcript is stitched together in the right order. "
)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """About two minutes of English speech with pauses between paragraphs (several chunks)."""
    if not shutil.which("espeak-ng"):
        pytest.fail("espeak-ng is needed to make test speech (apt-get install espeak-ng)")
    out = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = " ".join(f"Paragraph {i}. " + SPEECH for i in range(1, 9))
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(out), text], check=True,
                   capture_output=True)
    return out


@pytest.fixture
def redis_url(tmp_path):
    """A throwaway redis-server on a free loopback port (no persistence)."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def up():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    assert wait_for(up, 10)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
