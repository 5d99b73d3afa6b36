"""The tray against a REAL node child process (`python -m sayit_node serve`, tiny.en)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from sayit_desktop.settings_store import ConfigFile
from sayit_desktop.supervisor import State
from sayit_desktop.tray import Tray

from .helpers import free_port, healthy, port_is_free, start_node_process, wait_for, write_config

MODEL_LOAD_TIMEOUT_MS = 60_000  # tiny.en loads in ~2 s here; a first-run download can take longer


def node_children() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "sayit_node" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
            pass
    return out


@pytest.fixture
def tray(qtbot, node_env, real_node, supervisors):
    sup = supervisors(backoff=(0.5, 1.0, 2.0))
    quits = []
    t = Tray(sup, config=ConfigFile(), autostart=None, opener=lambda url: None,
             quit_app=lambda: quits.append(True))
    t.quits = quits
    yield t
    if t.load_window is not None:
        t.load_window.close()


def test_start_and_stop_from_the_menu(tray, qtbot, node_env):
    sup = tray.sup
    assert tray.start_action.isEnabled() and not tray.stop_action.isEnabled()
    started = time.monotonic()
    tray.start_action.trigger()
    assert sup.state == State.STARTING
    assert not tray.start_action.isEnabled() and tray.stop_action.isEnabled()
    qtbot.waitUntil(lambda: sup.state == State.RUNNING, timeout=MODEL_LOAD_TIMEOUT_MS)
    took = time.monotonic() - started
    print(f"\n[figure] Start from the menu -> node healthy after {took:.2f} s")
    assert healthy(node_env.port)
    assert not sup.attached and sup.pid is not None
    proc = psutil.Process(sup.pid)
    assert proc.cmdline()[1:] == ["-m", "sayit_node", "serve"]  # no setting flags
    assert proc.environ()["SAYIT_PARENT_PID"] == str(os.getpid())
    qtbot.waitUntil(lambda: sup.last_snapshot is not None, timeout=5000)
    assert tray.status_action.text().startswith("Running · 0 peers · 0 chunks active")
    assert sup.display_state == "idle"
    assert tray.docs_action.isEnabled()

    pid = sup.pid
    tray.stop_action.trigger()
    assert sup.state == State.STOPPING
    qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=15000)
    assert sup.last_exit_code == 0  # stopped gracefully through POST /api/shutdown, not killed
    assert not psutil.pid_exists(pid)
    assert port_is_free(node_env.port)
    assert node_children() == []
    assert tray.status_action.text() == "Stopped" and tray.start_action.isEnabled()
    assert "stopped" in (node_env.log_dir / "sayit-node.log").read_text()


def test_sigkilled_node_shows_error_and_is_restarted(tray, qtbot, node_env):
    sup = tray.sup
    tray.start_action.trigger()
    qtbot.waitUntil(lambda: sup.state == State.RUNNING, timeout=MODEL_LOAD_TIMEOUT_MS)
    first = sup.pid
    seen = []
    sup.state_changed.connect(lambda s: seen.append((s, tray.status_action.text(), sup.display_state)))
    os.kill(first, signal.SIGKILL)
    qtbot.waitUntil(lambda: sup.state == State.ERROR, timeout=5000)
    assert "signal 9" in sup.detail and "restarting" in sup.detail
    assert tray.status_action.text() == "Error — restarting"
    assert "signal 9" in tray.icon.toolTip()
    assert tray.messages[-1][0] == "SayIt node error"
    killed_at = time.monotonic()
    qtbot.waitUntil(lambda: sup.state == State.RUNNING and sup.pid not in (None, first),
                    timeout=MODEL_LOAD_TIMEOUT_MS)
    print(f"\n[figure] node SIGKILLed -> healthy again after {time.monotonic() - killed_at:.2f} s")
    assert ("error", "Error — restarting", "error") in seen
    assert healthy(node_env.port)
    assert len(node_children()) == 1


def test_an_existing_node_is_attached_not_fought(tray, qtbot, node_env, spawned):
    node = start_node_process(node_env.port, node_env.root / "own-node.log")
    spawned.append(node)
    assert wait_for(lambda: healthy(node_env.port), 60)
    sup = tray.sup
    sup.start()
    qtbot.waitUntil(lambda: sup.state == State.RUNNING, timeout=5000)
    assert sup.attached and sup.pid is None
    assert [p.pid for p in node_children()] == [node.pid]  # it started no second node
    assert "external node" in tray.status_action.text()
    assert tray.stop_action.isEnabled()
    tray.stop_action.trigger()  # a node it did not start is stopped through the API only
    qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=15000)
    assert node.wait(10) == 0
    assert port_is_free(node_env.port)


def test_quit_leaves_no_process(tray, qtbot, node_env):
    sup = tray.sup
    tray.start_action.trigger()
    qtbot.waitUntil(lambda: sup.state == State.RUNNING, timeout=MODEL_LOAD_TIMEOUT_MS)
    pid = sup.pid
    tray.quit_action.trigger()
    assert not tray.start_action.isEnabled() and not tray.stop_action.isEnabled()
    qtbot.waitUntil(lambda: tray.quits == [True], timeout=15000)
    assert not psutil.pid_exists(pid)
    assert node_children() == []
    assert port_is_free(node_env.port)


def test_load_window_follows_a_real_job_and_the_peers(tray, qtbot, node_env, speech_wav, tmp_path,
                                                     redis_url, spawned):
    """Two real nodes share a loopback Redis (the tray's node finds it in config.toml); a real
    multi-chunk job runs on both while the load window shows its progress and the peers."""
    write_config(node_env.config, f'port = {node_env.port}\nmax_concurrent_chunks = 1\nredis_url = "{redis_url}"\n')
    sup = tray.sup
    tray.start_action.trigger()
    qtbot.waitUntil(lambda: sup.state == State.RUNNING, timeout=MODEL_LOAD_TIMEOUT_MS)
    tray.load_action.trigger()
    win = tray.load_window
    qtbot.waitUntil(lambda: win.peer_names() == ["test-node (this node)"], timeout=5000)

    peer_port = free_port()
    peer = start_node_process(
        peer_port, tmp_path / "peer.log", REDIS_URL=redis_url, WORKER_ID="peer-node",
        MAX_CONCURRENT_CHUNKS="1", SAYIT_DATA_DIR=str(tmp_path / "peer-data"),
        SAYIT_LOG_DIR=str(tmp_path / "peer-logs"), SAYIT_CONFIG_FILE=str(tmp_path / "peer.toml"))
    spawned.append(peer)
    qtbot.waitUntil(lambda: win.peer_names() == ["test-node (this node)", "peer-node"], timeout=60_000)
    assert ("Peer joined", "peer-node joined the cluster.") in tray.messages
    assert tray.status_action.text().startswith("Running · 1 peer · ")

    with open(speech_wav, "rb") as fh:
        resp = httpx.post(f"{sup.url}/api/transcribe", files={"audio": ("speech.wav", fh, "audio/wav")},
                          data={"async": "true"}, timeout=60, trust_env=False)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["jobId"]

    frames = []  # what the window showed after each poll

    def cell(table, row, col):
        item = table.item(row, col)
        return item.text() if item is not None else ""

    def record(_snap):
        frames.append({
            "progress": win.progress_values(),
            "chunks": win.chunks.text(),
            "jobs": win.jobs_summary.text(),
            "status": cell(win.jobs, 0, 1),
            "chunk_cell": cell(win.jobs, 0, 3),
            "peer_load": cell(win.peers, 1, 3),
            "line": tray.status_action.text(),
            "icon": sup.display_state,
        })
        if 0 < (frames[-1]["progress"] or [0])[0] < 100 and not (tmp_path / "load.png").exists():
            win.grab().save(str(tmp_path / "load.png"))

    sup.snapshot_ready.connect(record)
    qtbot.waitUntil(lambda: bool(frames) and frames[-1]["status"] == "completed", timeout=120_000)
    sup.snapshot_ready.disconnect(record)

    progress = [f["progress"][0] for f in frames if f["progress"]]
    middle = [p for p in progress if 0 < p < 100]
    assert middle, f"no progress seen between 0 and 100: {progress}"
    assert progress == sorted(progress)  # it only goes forward
    assert progress[-1] == 100
    busy = [f for f in frames if f["status"] == "running"]
    assert busy and busy[0]["icon"] == "busy"
    assert any(f["chunks"].startswith("1 active") for f in busy)
    assert any("1 running" in f["jobs"] for f in busy)
    assert any(" 1 active" in f["peer_load"] for f in busy), [f["peer_load"] for f in busy]  # the peer works too
    assert any(f["line"].startswith("Running · 1 peer · 1 chunk active") for f in busy)
    done, total = frames[-1]["chunk_cell"].split("/")
    assert int(done) == int(total) > 1  # a real multi-chunk job
    assert frames[-1]["jobs"].startswith("0 running · 0 queued · 1 finished")
    assert win.cpu.text().endswith("%") and win.memory.text().endswith("MB")
    assert win.speed.text().endswith("audio-s/s") and win.speed.text() != "0.0 audio-s/s"
    assert cell(win.jobs, 0, 0) == "speech.wav"
    assert (tmp_path / "load.png").stat().st_size > 10_000
    assert ("Transcription finished", "speech.wav is ready.") in tray.messages
    assert httpx.get(f"{sup.url}/api/jobs/{job_id}", trust_env=False).json()["status"] == "completed"

    peer.terminate()  # a clean stop (uvicorn re-raises SIGTERM after it): the peer says goodbye
    peer.wait(20)
    qtbot.waitUntil(lambda: win.peer_names() == ["test-node (this node)"], timeout=20_000)
    assert ("Peer left", "peer-node left the cluster.") in tray.messages

    tray.stop_action.trigger()  # while Redis is still there
    qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=20_000)
    assert sup.last_exit_code == 0


def test_sigkilled_tray_takes_its_node_down(node_env, real_node, spawned):
    """The app as a separate process: one instance only; SIGKILL it -> its node stops too."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    app = subprocess.Popen([sys.executable, "-m", "sayit_desktop"], env=env, cwd=node_env.root,
                           stdout=subprocess.DEVNULL, stderr=open(node_env.root / "app.log", "wb"))
    spawned.append(app)
    assert wait_for(lambda: healthy(node_env.port), 60), (node_env.root / "app.log").read_text()
    nodes = psutil.Process(app.pid).children()
    assert len(nodes) == 1 and "sayit_node" in " ".join(nodes[0].cmdline())
    node = nodes[0]

    second = subprocess.run([sys.executable, "-m", "sayit_desktop"], env=env, cwd=node_env.root,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 0 and "already running" in second.stderr
    assert len(psutil.Process(app.pid).children()) == 1  # still one node

    app.kill()
    app.wait(5)
    killed = time.monotonic()
    assert wait_for(lambda: not node.is_running() or node.status() == psutil.STATUS_ZOMBIE, 10, 0.05)
    gone = time.monotonic() - killed
    assert wait_for(lambda: port_is_free(node_env.port), 5)
    print(f"\n[figure] tray SIGKILLed -> node gone after {gone:.2f} s")
    assert gone < 5

    # The killed instance left its lock behind; a new one must still start (stale lock).
    again = subprocess.Popen([sys.executable, "-m", "sayit_desktop", "--no-start"], env=env,
                             cwd=node_env.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    spawned.append(again)
    time.sleep(3)
    assert again.poll() is None, again.stderr.read()
    again.send_signal(signal.SIGTERM)
    assert again.wait(15) == 0
    assert "already running" not in again.stderr.read()


def test_settings_change_restarts_the_node_with_api_keys(tray, qtbot, node_env):
    """With API keys set, the tray still reads every route and stops the node gracefully; a
    port changed in Settings applies after the offered restart."""
    from sayit_desktop.settings_dialog import SettingsDialog

    write_config(node_env.config, f'port = {node_env.port}\napi_keys = ["tray-test-key-1"]\n')
    sup = tray.sup
    tray.start_action.trigger()
    qtbot.waitUntil(lambda: sup.state == State.RUNNING, timeout=MODEL_LOAD_TIMEOUT_MS)
    qtbot.waitUntil(lambda: sup.last_snapshot is not None, timeout=5000)
    assert httpx.get(f"{sup.url}/api/nodes", trust_env=False).status_code == 401  # keys are on
    assert sup.last_snapshot.errors == [] and sup.last_snapshot.me.get("name") == "test-node"
    first_pid, old_port = sup.pid, node_env.port

    dialog = SettingsDialog(ConfigFile(), sup)
    qtbot.addWidget(dialog)
    asked = []
    dialog.ask_restart = lambda changed: asked.append(changed) or True
    new_port = free_port()
    dialog.port.setValue(new_port)
    assert dialog.save()
    assert asked == [{"port"}]
    qtbot.waitUntil(lambda: sup.state == State.RUNNING and sup.pid not in (None, first_pid), timeout=60_000)
    assert sup.url.endswith(f":{new_port}")
    assert healthy(new_port)
    assert not psutil.pid_exists(first_pid)
    assert port_is_free(old_port)
    tray.stop_action.trigger()
    qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=15000)
    assert sup.last_exit_code == 0  # POST /api/shutdown with the key, not a signal
