""""Transcribe file…" in the tray against a REAL node (tiny.en) with real espeak-ng speech: a file
goes in through the menu action (the file dialog is patched to answer with its path) and one by
drag-and-drop onto the load window; progress shows; the transcript opens, copies and saves as a
valid SRT that the node rendered; the list survives a restart and marks jobs the node forgot;
no HTTP call ever runs on the UI thread. And the no-system-tray fallback."""

from __future__ import annotations

import contextlib
import json
import re
import threading

import psutil
import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog

from sayit_desktop.load_window import NO_TRAY_NOTICE
from sayit_desktop.settings_store import ConfigFile
from sayit_desktop.supervisor import State
from sayit_desktop.transcripts import SETTINGS_KEY, Transcripts, state_file
from sayit_desktop.tray import Tray
from sayit_node.client import NodeClient
from tests.speech import PARAGRAPHS, speak_paragraphs, text_of, wer

from .helpers import port_is_free

MODEL_LOAD_TIMEOUT_MS = 60_000
SRT_BLOCK = re.compile(r"^(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)$", re.S)


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    """Every block: index, start and end in seconds, text. Fails on anything else."""
    blocks = [b for b in text.replace("\r\n", "\n").strip().split("\n\n") if b.strip()]
    parsed = []
    for block in blocks:
        m = SRT_BLOCK.match(block.strip())
        assert m, f"not an SRT block: {block!r}"
        g = [int(x) if x.isdigit() else x for x in m.groups()]
        start = g[1] * 3600 + g[2] * 60 + g[3] + g[4] / 1000
        end = g[5] * 3600 + g[6] * 60 + g[7] + g[8] / 1000
        parsed.append((g[0], start, end, g[9].strip()))
    return parsed


class ThreadLog(list):
    """Names of the threads of the app's HTTP calls; the test's own calls (`with log.paused():`)
    are left out."""

    def __init__(self) -> None:
        super().__init__()
        self.pause = False

    @contextlib.contextmanager
    def paused(self):
        self.pause = True
        try:
            yield
        finally:
            self.pause = False


@pytest.fixture
def http_threads(monkeypatch):
    seen = ThreadLog()
    original = NodeClient._request

    def spy(self, *args, **kwargs):
        if not (seen.pause and threading.current_thread() is threading.main_thread()):
            seen.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NodeClient, "_request", spy)
    return seen


@pytest.fixture
def tray(qtbot, node_env, real_node, supervisors):
    sup = supervisors()
    quits = []
    t = Tray(sup, config=ConfigFile(), autostart=None, opener=lambda url: None,
             quit_app=lambda: quits.append(True))
    t.quits = quits
    yield t
    t.transcripts.close()
    for viewer in t.viewers.values():
        viewer.close()
    if t.load_window is not None:
        t.load_window.on_close = None
        t.load_window.close()


def drop_files(widget, paths) -> bool:
    """A real drag-enter and drop of file URLs on the widget, as a file manager sends them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = widget.rect().center()
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(pos.toPointF() if hasattr(pos, "toPointF") else QPoint(pos), Qt.DropAction.CopyAction,
                      mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def lines_text(window_text: str) -> str:
    return " ".join(re.sub(r"^\[\d+:\d\d(:\d\d)?\]\s+", "", line) for line in window_text.splitlines())


def test_transcribe_file_from_the_menu_and_by_drop(tray, qtbot, node_env, speech_dir, tmp_path, monkeypatch,
                                                   http_threads):
    meeting = speak_paragraphs(PARAGRAPHS[:3], speech_dir / "tray-meeting.wav")  # ~45 s: 2 chunks
    meeting_text = text_of(PARAGRAPHS[:3])
    note = speak_paragraphs(PARAGRAPHS[3:4], speech_dir / "tray-note.wav")
    note_text = PARAGRAPHS[3]
    sup, transcripts = tray.sup, tray.transcripts
    assert not tray.recent_menu.menuAction().isEnabled()  # nothing yet

    tray.start_action.trigger()
    qtbot.waitUntil(lambda: sup.state == State.RUNNING, timeout=MODEL_LOAD_TIMEOUT_MS)
    tray.load_action.trigger()
    win = tray.load_window
    panel = win.recent
    assert panel is not None and panel.empty.isVisible()

    # Every status text the list shows while the jobs run.
    seen: list[str] = []
    transcripts.changed.connect(lambda key: seen.extend(s for s in panel.statuses() if s not in seen))

    asked = []

    def pick(parent, caption, folder, filters):
        asked.append((caption, filters))
        return [str(meeting)], filters.split(";;")[0]

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", pick)
    assert tray.transcribe_action.isEnabled()
    tray.transcribe_action.trigger()
    assert asked and "*.wav" in asked[0][1]
    assert [e.filename for e in transcripts.entries] == ["tray-meeting.wav"]

    # The second file arrives by drag-and-drop on the load window.
    assert drop_files(win, [note])
    assert [e.filename for e in transcripts.entries] == ["tray-note.wav", "tray-meeting.wav"]
    assert panel.table.rowCount() == 2

    qtbot.waitUntil(lambda: all(e.done for e in transcripts.entries), timeout=180_000)
    entries = {e.filename: e for e in transcripts.entries}
    assert all(e.status == "completed" and e.job_id for e in entries.values())
    middle = [s for s in seen if re.fullmatch(r"(Queued|Transcribing) \d+%", s) and s.split()[-1] not in ("0%", "100%")]
    assert middle, seen  # progress seen moving, not only "Done"
    assert panel.statuses() == ["Done", "Done"]
    assert ("Transcription finished", "tray-meeting.wav is ready.") in tray.messages
    assert ("Transcription finished", "tray-note.wav is ready.") in tray.messages
    assert sum(m == ("Transcription finished", "tray-meeting.wav is ready.") for m in tray.messages) == 1
    # The node's own job list agrees (these are jobs of the tray's node).
    with http_threads.paused():
        node_jobs = {j["jobId"]: j for j in sup.client.jobs()}
    assert node_jobs[entries["tray-meeting.wav"].job_id]["filename"] == "tray-meeting.wav"
    assert node_jobs[entries["tray-meeting.wav"].job_id]["totalChunks"] >= 2

    # Open: the transcript view shows the timestamped text.
    row = panel.keys().index(entries["tray-meeting.wav"].key)
    panel.button(row, "Open").click()
    viewer = tray.viewers[id(entries["tray-meeting.wav"])]
    assert viewer.isVisible() and viewer.windowTitle() == "tray-meeting.wav — SayIt"
    shown = viewer.text.toPlainText()
    assert shown.splitlines()[0].startswith("[0:00]")
    assert len(shown.splitlines()) >= 3
    assert wer(meeting_text, lines_text(shown)) < 20, shown

    # Copy text (from the list row and from the view).
    QApplication.clipboard().clear()
    panel.button(row, "Copy").click()
    assert wer(meeting_text, QApplication.clipboard().text()) < 20
    viewer.copy_button.click()
    assert wer(meeting_text, QApplication.clipboard().text()) < 20

    # Save as SRT from the view's menu: the node renders it; the file is valid SRT.
    target = tmp_path / "out" / "meeting.srt"
    target.parent.mkdir()
    saved_as = []

    def save_to(parent, caption, suggested, filters):
        saved_as.append((caption, suggested, filters))
        return str(target), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_to)
    save_actions = {a.text(): a for a in viewer.save_button.menu().actions()}
    assert list(save_actions) == ["Save as TXT…", "Save as SRT…", "Save as VTT…"]
    save_actions["Save as SRT…"].trigger()
    assert saved_as[0][1].endswith("tray-meeting.srt") and "*.srt" in saved_as[0][2]
    qtbot.waitUntil(target.exists, timeout=10_000)
    blocks = parse_srt(target.read_text(encoding="utf-8"))
    assert [b[0] for b in blocks] == list(range(1, len(blocks) + 1))
    assert all(start < end for _, start, end, _ in blocks)
    assert all(a[2] <= b[1] + 0.001 for a, b in zip(blocks, blocks[1:]))  # in order, no overlap
    assert blocks[-1][2] > 35  # ~45 s of speech: the second chunk's times are shifted by its offset
    assert wer(meeting_text, " ".join(b[3] for b in blocks)) < 20
    with http_threads.paused():
        assert target.read_text(encoding="utf-8") == sup.client.result(entries["tray-meeting.wav"].job_id, "srt")

    # Save as VTT and TXT from the tray's submenu of the other entry.
    tray.fill_recent_menu()
    subs = {a.text(): a.menu() for a in tray.recent_menu.actions()}
    assert set(subs) == {"tray-note.wav — Done", "tray-meeting.wav — Done"}
    note_menu = {a.text(): a for a in subs["tray-note.wav — Done"].actions() if not a.isSeparator()}
    assert list(note_menu) == ["Open", "Copy text", "Save as TXT…", "Save as SRT…", "Save as VTT…",
                               "Remove from list"]
    for ext in ("txt", "vtt"):
        out = tmp_path / "out" / f"note.{ext}"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, out=out: (str(out), a[-1]))
        note_menu[f"Save as {ext.upper()}…"].trigger()
        qtbot.waitUntil(out.exists, timeout=10_000)
    # tiny.en mishears this 40-word paragraph by 9-10 words ("power king" for "parking"), and a
    # change no one would hear moves that by a word or two (storing chunks bit for bit, 9c63c17,
    # took it from under 25% to 25.0%; bench/spread.py measures such moves). The check is that the
    # saved files hold this note's words, not another file's or none: those score 100 or more.
    assert wer(note_text, (tmp_path / "out" / "note.txt").read_text(encoding="utf-8")) < 35
    vtt = (tmp_path / "out" / "note.vtt").read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT") and "-->" in vtt
    assert wer(note_text, " ".join(line for line in vtt.splitlines()[1:] if line and "-->" not in line)) < 35

    # No HTTP call ran on the UI thread (polls, uploads, results: all on workers).
    main = threading.main_thread().name
    assert len(http_threads) > 10 and main not in http_threads, set(http_threads)

    # The list is kept: a new tray session reads it back. A job the node no longer has is
    # shown as gone (here an id of a job from a node with another data directory).
    path = state_file(ConfigFile().path)
    stored = json.loads(tray.transcripts.settings.value(SETTINGS_KEY))
    assert [s["filename"] for s in stored] == ["tray-note.wav", "tray-meeting.wav"]
    stored.append({**stored[-1], "job_id": "0123456789abcdef", "filename": "old-interview.wav",
                   "status": "completed"})
    tray.transcripts.settings.setValue(SETTINGS_KEY, json.dumps(stored))
    tray.transcripts.settings.sync()
    again = Transcripts(sup, path)
    try:
        assert [e.filename for e in again.entries] == ["tray-note.wav", "tray-meeting.wav", "old-interview.wav"]
        assert all(e.transcript is None for e in again.entries)  # texts come from the node again
        qtbot.waitUntil(lambda: again.entries[0].done and again.entries[1].done
                        and again.entries[2].status == "gone", timeout=10_000)
        assert wer(meeting_text, again.entries[1].text) < 20
        assert again.entries[2].status_text() == "No longer on the node"
        assert not again.entries[2].done
    finally:
        again.close()

    # Remove from the list: gone from the window and from the stored list.
    panel.button(0, "✕").click()
    assert [e.filename for e in transcripts.entries] == ["tray-meeting.wav"]
    assert panel.table.rowCount() == 1
    assert [s["filename"] for s in json.loads(transcripts.settings.value(SETTINGS_KEY))] == ["tray-meeting.wav"]


def test_a_file_the_node_refuses_is_shown_as_failed(tray, qtbot, node_env, tmp_path, monkeypatch):
    sup = tray.sup
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("this is not audio\n" * 50)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a: ([str(not_audio)], ""))
    tray.transcribe_action.trigger()  # before the node runs: it waits, then goes
    entry = tray.transcripts.entries[0]
    assert entry.status == "pending" and entry.status_text() == "Waiting for the node"
    assert tray.messages[-1][0] == "The node is not running"
    tray.start_action.trigger()
    qtbot.waitUntil(lambda: entry.status == "failed", timeout=MODEL_LOAD_TIMEOUT_MS)
    assert entry.error and "Traceback" not in entry.error
    assert tray.messages[-1][0] == "Transcription failed"
    assert not entry.job_id
    assert tray.transcripts.settings.value(SETTINGS_KEY) in (None, "[]")  # nothing to come back to
    # The next "Transcribe file…" opens where the last file came from; cancelling adds nothing.
    folders = []
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a: folders.append(a[2]) or ([], ""))
    tray.transcribe_action.trigger()
    assert folders == [str(tmp_path)] and len(tray.transcripts.entries) == 1
    tray.stop_action.trigger()
    qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=20_000)


def test_without_a_system_tray_the_window_carries_the_menu_and_closing_it_quits(
        qtbot, node_env, real_node, supervisors):
    sup = supervisors()
    quits = []
    tray = Tray(sup, config=ConfigFile(), autostart=None, opener=lambda url: None,
                quit_app=lambda: quits.append(True), system_tray=False)
    try:
        tray.show()
        win = tray.load_window
        assert win is not None and win.isVisible()
        assert not tray.icon.isVisible()  # no invisible icon
        assert win.windowTitle() == "SayIt"
        assert win.notice is not None and win.notice.text() == NO_TRAY_NOTICE
        buttons = {b.text(): b for b in win.menu_buttons}
        assert list(buttons) == ["Start node", "Stop node", "Transcribe file…", "Open API docs", "Settings…",
                                 "Open logs", "Quit"]
        assert buttons["Start node"].isEnabled() and not buttons["Stop node"].isEnabled()
        assert win.recent is not None  # the recent transcripts are here too

        buttons["Start node"].click()
        qtbot.waitUntil(lambda: sup.state == State.RUNNING, timeout=MODEL_LOAD_TIMEOUT_MS)
        assert buttons["Stop node"].isEnabled() and not buttons["Start node"].isEnabled()
        pid = sup.pid

        # Notifications land in the window (no balloon without a tray).
        tray.notify("Transcription finished", "x.wav is ready.")
        assert not win.message.isHidden() and "x.wav is ready." in win.message.text()

        win.close()  # what the window manager's close button does
        qtbot.waitUntil(lambda: quits == [True], timeout=20_000)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert sup.state in (State.STOPPED, State.ERROR) and sup.process is None
        assert port_is_free(node_env.port)
    finally:
        tray.transcripts.close()
