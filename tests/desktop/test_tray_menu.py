"""Tray menu structure, enabled states, actions and notifications (offscreen, no node)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QSystemTrayIcon

from sayit_desktop.client import Snapshot
from sayit_desktop.icons import STATES, state_icon
from sayit_desktop.settings_store import ConfigFile, DesktopSettings
from sayit_desktop.supervisor import State
from sayit_desktop.tray import Tray, status_line

MENU = ["<status>", "", "Start node", "Stop node", "", "Transcribe file…", "Recent transcripts", "",
        "Show load…", "Open API docs", "Settings…", "", "Start SayIt at login", "Open logs", "", "Quit"]


class FakeAutostart:
    def __init__(self):
        self.enabled = False
        self.calls = []

    def is_enabled(self):
        return self.enabled

    def enable(self):
        self.calls.append("enable")
        self.enabled = True

    def disable(self):
        self.calls.append("disable")
        self.enabled = False


@pytest.fixture
def tray(qtbot, node_env, supervisors):
    sup = supervisors()
    opened, quits = [], []
    t = Tray(sup, config=ConfigFile(), autostart=FakeAutostart(), opener=opened.append,
             quit_app=lambda: quits.append(True))
    t.opened, t.quits = opened, quits
    yield t
    for w in (t.load_window, t.settings_dialog):
        if w is not None:
            w.close()


def texts(tray):
    return [a.text() if not a.isSeparator() else "" for a in tray.menu.actions()]


def enabled(tray):
    return {a.text(): a.isEnabled() for a in tray.menu.actions() if not a.isSeparator()}


def snapshot(*, peers=(), active=0, queued=0, jobs=()):
    nodes = [{"id": "me", "name": "this", "self": True, "state": "up", "engine": "faster-whisper",
              "device": "cuda", "cores": 2, "load": {"cpu": 12.5, "memory": 300 * 1024 * 1024, "activeChunks": active,
                                   "queuedChunks": queued, "speed": 21.5},
              "lastSeen": "2026-01-01T00:00:00+00:00"}]
    for pid, name in peers:
        nodes.append({"id": pid, "name": name, "self": False, "state": "up", "engine": "mlx", "cores": 8,
                      "load": {"cpu": 40, "memory": 1, "activeChunks": 1, "queuedChunks": 0, "speed": 3},
                      "lastSeen": "2026-01-01T00:00:00+00:00"})
    return Snapshot(health={"status": "ok", "nodeId": "me", "name": "this"},
                    queue={"jobs": {"queued": 0, "running": 1 if active else 0, "completed": 3,
                                    "failed": 1, "cancelled": 0},
                           "chunks": {"queued": queued, "running": active, "done": 9}},
                    jobs=list(jobs), nodes=nodes)


def test_menu_structure(tray):
    items = texts(tray)
    assert items[0] == "Stopped"
    assert items[1:] == MENU[1:]
    assert tray.login_action.isCheckable()
    assert not tray.status_action.isEnabled()
    assert tray.icon.contextMenu() is tray.menu


@pytest.mark.parametrize("state,start,stop,docs", [
    (State.STOPPED, True, False, False),
    (State.STARTING, False, True, False),
    (State.RUNNING, False, True, True),
    (State.STOPPING, False, False, False),
    (State.ERROR, True, False, False),
])
def test_enabled_states_follow_the_node(tray, state, start, stop, docs):
    tray.sup.url = "http://127.0.0.1:1"
    tray.sup._set_state(state, "detail text")
    tray.sup._tick_timer.stop()
    en = enabled(tray)
    assert en["Start node"] is start
    assert en["Stop node"] is stop
    assert en["Open API docs"] is docs
    for always in ("Show load…", "Settings…", "Start SayIt at login", "Open logs", "Quit"):
        assert en[always] is True


def test_status_line_and_tooltip_and_icon(tray):
    sup = tray.sup
    sup.url = "http://127.0.0.1:3000"
    sup._set_state(State.RUNNING, "Running")
    sup._tick_timer.stop()
    sup.last_snapshot = snapshot(peers=[("p1", "mac-mini"), ("p2", "pc")], active=3)
    tray.refresh()
    assert tray.status_action.text() == "Running · 2 peers · 3 chunks active"
    assert "Running · 2 peers" in tray.icon.toolTip() and "http://127.0.0.1:3000" in tray.icon.toolTip()
    assert sup.display_state == "busy"
    assert tray.icon.icon().cacheKey() == state_icon("busy").cacheKey()
    sup.last_snapshot = snapshot(peers=[("p1", "mac-mini")])
    tray.refresh()
    assert tray.status_action.text() == "Running · 1 peer · 0 chunks active"
    assert sup.display_state == "idle"
    sup._set_state(State.ERROR, "The node exited unexpectedly (signal 9)")
    assert tray.status_action.text() == "Error"
    assert "signal 9" in tray.icon.toolTip()
    assert tray.icon.icon().cacheKey() == state_icon("error").cacheKey()


def test_icons_exist_for_every_state():
    for state in STATES:
        icon = state_icon(state)
        assert not icon.isNull()
        assert icon.pixmap(22, 22).width() == 22
    shipped = Path(__file__).resolve().parents[2] / "resources" / "icons"
    assert sorted(p.name for p in shipped.glob("tray-*-64.png")) == sorted(
        f"tray-{s}-64.png" for s in (*STATES, "app"))


def test_open_api_docs_opens_schema(tray):
    tray.sup.url = "http://127.0.0.1:4321"
    tray.sup._set_state(State.RUNNING, "Running")
    tray.sup._tick_timer.stop()
    tray.docs_action.trigger()
    assert [u.toString() for u in tray.opened] == ["http://127.0.0.1:4321/schema"]


def test_open_logs_opens_the_log_dir(tray, node_env):
    tray.logs_action.trigger()
    assert len(tray.opened) == 1
    assert tray.opened[0].isLocalFile()
    assert Path(tray.opened[0].toLocalFile()) == node_env.log_dir
    assert node_env.log_dir.is_dir()


def test_start_at_login_toggles(tray):
    auto = tray.autostart
    assert not tray.login_action.isChecked()
    tray.login_action.trigger()
    assert auto.calls == ["enable"] and tray.login_action.isChecked()
    tray.login_action.trigger()
    assert auto.calls == ["enable", "disable"] and not tray.login_action.isChecked()
    auto.enabled = True  # changed outside the app: the check follows when the menu opens
    tray.menu.aboutToShow.emit()
    assert tray.login_action.isChecked()


def test_start_at_login_failure_is_reported(tray):
    def boom():
        raise PermissionError("read-only home")

    tray.autostart.enable = boom
    tray.login_action.trigger()
    assert not tray.login_action.isChecked()
    assert tray.messages[-1][0] == "Start at login" and "read-only home" in tray.messages[-1][1]


def test_show_load_and_settings_open_windows(tray, qtbot):
    tray.load_action.trigger()
    assert tray.load_window is not None and tray.load_window.isVisible()
    tray.settings_action.trigger()
    assert tray.settings_dialog is not None and tray.settings_dialog.isVisible()
    first = tray.load_window
    tray.load_action.trigger()
    assert tray.load_window is first  # one window, raised again


def test_left_click_opens_the_load_window(tray):
    tray.icon.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    assert tray.load_window is not None and tray.load_window.isVisible()


def test_quit_without_a_node_quits_at_once(tray):
    tray.quit_action.trigger()
    assert tray.quits == [True]


def test_job_notifications(tray):
    running = {"jobId": "j1", "status": "running", "filename": "talk.wav", "progress": 40}
    tray._snapshot(snapshot(jobs=[running, {"jobId": "old", "status": "completed", "filename": "old.wav"}]))
    assert tray.messages == []  # the first poll only learns what exists
    tray._snapshot(snapshot(jobs=[{**running, "status": "completed", "progress": 100},
                                  {"jobId": "old", "status": "completed", "filename": "old.wav"},
                                  {"jobId": "j2", "status": "failed", "filename": "bad.mp3",
                                   "error": "not audio"}]))
    assert ("Transcription finished", "talk.wav is ready.") in tray.messages
    assert ("Transcription failed", "bad.mp3: not audio") in tray.messages
    assert len(tray.messages) == 2
    tray._snapshot(snapshot(jobs=[{**running, "status": "completed"}]))
    assert len(tray.messages) == 2  # told once


def test_peer_notifications_and_their_toggle(tray):
    tray._snapshot(snapshot(peers=[("a", "alpha")]))
    tray._snapshot(snapshot(peers=[("a", "alpha"), ("b", "beta")]))
    tray._snapshot(snapshot(peers=[("b", "beta")]))
    assert tray.messages == [("Peer joined", "beta joined the cluster."),
                             ("Peer left", "alpha left the cluster.")]
    tray.desktop = DesktopSettings(notify_peers=False)
    tray._snapshot(snapshot(peers=[]))
    tray._snapshot(snapshot(peers=[("c", "gamma")]))
    assert len(tray.messages) == 2


def test_job_notifications_can_be_switched_off(tray):
    tray.desktop = DesktopSettings(notify_jobs=False)
    tray._snapshot(snapshot(jobs=[{"jobId": "j1", "status": "running"}]))
    tray._snapshot(snapshot(jobs=[{"jobId": "j1", "status": "completed"}]))
    assert tray.messages == []


def test_status_line_texts(tray):
    sup = tray.sup
    assert status_line(sup) == "Stopped"
    sup.state = State.STARTING
    assert status_line(sup) == "Starting…"
    sup.state = State.STOPPING
    assert status_line(sup) == "Stopping…"
    sup.state = State.RUNNING
    sup.attached = True
    sup.last_snapshot = None
    assert status_line(sup) == "Running (external node)"
    sup.responding = False
    assert status_line(sup) == "Not responding"


def test_a_crash_loop_notifies_once(tray):
    sup = tray.sup
    for _ in range(3):
        sup._set_state(State.STARTING, "Starting")
        sup._set_state(State.ERROR, "The node exited unexpectedly (code 1)")
    sup._tick_timer.stop()
    assert [m[0] for m in tray.messages] == ["SayIt node error"]
    sup._set_state(State.RUNNING, "Running")
    sup._tick_timer.stop()
    sup._set_state(State.ERROR, "The node exited unexpectedly (signal 9)")
    assert [m[0] for m in tray.messages] == ["SayIt node error", "SayIt node error"]


def test_load_window_fills_from_a_snapshot_and_clears_when_stopped(tray):
    sup = tray.sup
    sup.url = "http://127.0.0.1:3000"
    sup._set_state(State.RUNNING, "Running")
    sup._tick_timer.stop()
    tray.show_load()
    win = tray.load_window
    jobs = [{"jobId": "a", "status": "running", "filename": "a.wav", "progress": 42.4, "completedChunks": 3,
             "totalChunks": 7, "etaSeconds": 125},
            {"jobId": "b", "status": "completed", "filename": "b.wav", "progress": 100, "completedChunks": 2,
             "totalChunks": 2},
            {"jobId": "c", "status": "failed", "filename": "c.wav", "progress": 50, "error": "decode error",
             "completedChunks": 1, "totalChunks": 2, "failedChunks": 1}]
    sup.last_snapshot = snapshot(peers=[("p1", "mac-mini")], active=1, queued=4, jobs=jobs)
    win.update_snapshot(sup.last_snapshot)
    assert win.cpu.text() == "12 %"
    assert win.memory.text() == "300.0 MB"
    assert win.chunks.text() == "1 active · 4 queued"
    assert win.jobs_summary.text() == "1 running · 0 queued · 4 finished (1 failed)"
    assert win.speed.text() == "21.5 audio-s/s"
    assert win.peer_names() == ["this (this node)", "mac-mini"]
    assert win.peers.item(1, 1).text() == "mlx" and win.peers.item(1, 2).text() == "8"
    assert win.peers.item(0, 1).text() == "faster-whisper · cuda"  # SAYIT_DEVICE as the node reports it
    assert win.peers.item(1, 3).text() == "40% CPU · 1 active · 0 queued"
    assert win.progress_values() == [42, 100, 50]
    assert [win.jobs.item(r, 3).text() for r in range(3)] == ["3/7", "2/2", "1/2 (1 failed)"]
    assert win.jobs.item(0, 4).text() == "2 min 05 s"
    assert win.jobs.item(2, 1).text() == "failed: decode error"
    sup._set_state(State.STOPPED, "Node stopped")
    assert win.peers.rowCount() == 0 and win.jobs.rowCount() == 0 and win.cpu.text() == "—"
