"""The tray icon, its menu and notifications."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QApplication, QFileDialog, QMenu, QSystemTrayIcon

from .autostart import Autostart
from .client import Snapshot
from .icons import state_icon
from .settings_store import ConfigError, ConfigFile, DesktopSettings, effective_settings
from .supervisor import State, Supervisor
from .transcripts import SAVE_FORMATS, Transcripts, state_file

log = logging.getLogger(__name__)

FINISHED = ("completed", "failed", "cancelled")
AUDIO_FILTER = ("Audio and video (*.wav *.mp3 *.m4a *.aac *.flac *.ogg *.oga *.opus *.webm *.mp4 *.mkv *.mov "
                "*.wma *.aiff *.aif);;All files (*)")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def status_line(sup: Supervisor) -> str:
    """E.g. "Running · 2 peers · 3 chunks active"."""
    if sup.state == State.RUNNING:
        if not sup.responding:
            return "Not responding"
        snap = sup.last_snapshot
        head = "Running (external node)" if sup.attached else "Running"
        if snap is None:
            return head
        if snap.degraded:
            return "Degraded — cluster unavailable"
        parts = [head, plural(len(snap.peers_up), "peer"), f"{plural(snap.active_chunks, 'chunk')} active"]
        if snap.queued_chunks:
            parts.append(f"{snap.queued_chunks} queued")
        return " · ".join(parts)
    if sup.state == State.STARTING:
        return "Starting…"
    if sup.state == State.STOPPING:
        return "Stopping…"
    if sup.state == State.ERROR:
        return "Error — restarting" if sup.restart_at is not None else "Error"
    return "Stopped"


class Tray(QObject):
    def __init__(
        self,
        supervisor: Supervisor,
        *,
        config: ConfigFile | None = None,
        autostart: Autostart | None = None,
        opener: Callable[[QUrl], object] | None = None,
        quit_app: Callable[[], None] | None = None,
        system_tray: bool = True,
        transcripts: Transcripts | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.sup = supervisor
        self.config = config or ConfigFile()
        self.system_tray = system_tray  # False: no tray on this desktop; the window carries the menu
        self.transcripts = transcripts or Transcripts(supervisor, state_file(self.config.path), parent=self)
        self.viewers: dict[int, object] = {}  # id(entry) -> TranscriptWindow
        self._last_finished: str | None = None
        self.autostart = autostart
        self.opener = opener or QDesktopServices.openUrl
        self.quit_app = quit_app or QApplication.quit
        self.desktop: DesktopSettings = self.config.desktop()
        self.messages: list[tuple[str, str]] = []  # every notification shown (newest last)
        self.load_window = None
        self.settings_dialog = None
        self.quitting = False
        self._known_jobs: dict[str, str] | None = None
        self._known_peers: dict[str, str] | None = None
        self._error_told = False
        self._degraded_told = False

        self.icon = QSystemTrayIcon(state_icon("stopped"), self)
        self.menu = QMenu()
        self.status_action = self._action("Stopped", enabled=False)
        self.menu.addSeparator()
        self.start_action = self._action("Start node", self.start_node)
        self.stop_action = self._action("Stop node", self.stop_node)
        self.menu.addSeparator()
        self.transcribe_action = self._action("Transcribe file…", self.transcribe_files)
        self.recent_menu = QMenu("Recent transcripts", self.menu)
        self.menu.addMenu(self.recent_menu)
        self.recent_menu.aboutToShow.connect(self.fill_recent_menu)
        self.menu.addSeparator()
        self.load_action = self._action("Show load…", self.show_load)
        self.docs_action = self._action("Open API docs", self.open_docs)
        self.settings_action = self._action("Settings…", self.show_settings)
        self.menu.addSeparator()
        self.login_action = self._action("Start SayIt at login", checkable=True)
        self.login_action.toggled.connect(self.set_start_at_login)
        self.logs_action = self._action("Open logs", self.open_logs)
        self.menu.addSeparator()
        self.quit_action = self._action("Quit", self.quit)
        self.menu.aboutToShow.connect(self.refresh_login_check)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self.icon.messageClicked.connect(self._message_clicked)

        self.transcripts.finished.connect(self._transcript_finished)
        self.transcripts.message.connect(lambda title, text, critical: self.notify(title, text, critical=critical))
        self.transcripts.list_changed.connect(self.fill_recent_menu)
        self.transcripts.list_changed.connect(self._drop_viewers)
        self.transcripts.changed.connect(lambda _key: self.fill_recent_menu() if self.recent_menu.isVisible() else None)
        self.fill_recent_menu()

        self.sup.state_changed.connect(self._state_changed)
        self.sup.snapshot_ready.connect(self._snapshot)
        self._last_state = self.sup.state
        self.refresh_login_check()
        self.refresh()

    # --- building -------------------------------------------------------------------------
    def _action(self, text: str, slot=None, *, enabled: bool = True, checkable: bool = False) -> QAction:
        action = QAction(text, self.menu)
        action.setIconText(text)  # buttons made from it keep the "…" (the window without a tray)
        action.setEnabled(enabled)
        action.setCheckable(checkable)
        if slot is not None:
            action.triggered.connect(lambda _checked=False: slot())
        self.menu.addAction(action)
        return action

    def show(self) -> None:
        if self.system_tray:
            self.icon.show()
        else:
            log.warning("no system tray on this desktop: SayIt's menu is in its window; closing it quits")
            self.show_load()

    # --- state -----------------------------------------------------------------------------
    def refresh(self) -> None:
        sup = self.sup
        line = status_line(sup)
        self.status_action.setText(line)
        self.icon.setIcon(state_icon(sup.display_state))
        tip = f"SayIt — {line}"
        if sup.state == State.ERROR or (sup.state == State.RUNNING and not sup.responding):
            tip += f"\n{sup.detail}"
        elif sup.state == State.RUNNING and sup.last_snapshot and sup.last_snapshot.degraded:
            tip += f"\n{sup.last_snapshot.degraded}"
        if sup.url and sup.state in (State.RUNNING, State.STARTING):
            tip += f"\n{sup.url}"
        self.icon.setToolTip(tip)
        can_start = sup.state in (State.STOPPED, State.ERROR)
        can_stop = sup.state in (State.STARTING, State.RUNNING)
        self.start_action.setEnabled(can_start and not self.quitting)
        self.stop_action.setEnabled(can_stop and not self.quitting)
        self.docs_action.setEnabled(sup.state == State.RUNNING)

    def _state_changed(self, state: str) -> None:
        prev, self._last_state = self._last_state, self.sup.state
        if self.sup.state == State.STARTING:
            self._known_jobs = None
            self._known_peers = None
        if self.sup.state == State.RUNNING:
            self._error_told = False
        elif self.sup.state == State.ERROR and prev != State.ERROR and not self._error_told:
            self._error_told = True  # once per crash series, not on every retry
            self.notify("SayIt node error", self.sup.detail, critical=True)
        self.refresh()
        if self.quitting and self.sup.state in (State.STOPPED, State.ERROR):
            self._finish_quit()

    def _snapshot(self, snap: Snapshot) -> None:
        if snap.degraded and not self._degraded_told:
            self._degraded_told = True  # once per outage
            self.notify("SayIt cluster unavailable", snap.degraded, critical=True)
        elif not snap.degraded:
            self._degraded_told = False
        self._notify_jobs(snap)
        self._notify_peers(snap)
        self.refresh()

    # --- notifications ---------------------------------------------------------------------
    def notify(self, title: str, text: str, *, critical: bool = False) -> None:
        self.messages.append((title, text))
        if not self.system_tray:  # nobody would see a balloon: the window says it
            if self.load_window is not None:
                self.load_window.show_message(title, text, critical)
            return
        icon = QSystemTrayIcon.MessageIcon.Critical if critical else QSystemTrayIcon.MessageIcon.Information
        self.icon.showMessage(title, text, icon, 6000)

    def _notify_jobs(self, snap: Snapshot) -> None:
        current = {str(j.get("jobId")): str(j.get("status")) for j in snap.jobs if j.get("jobId")}
        known = self._known_jobs
        self._known_jobs = current
        if known is None or not self.desktop.notify_jobs:
            return
        mine = self.transcripts.job_ids()  # those are announced by the recent list
        for job in snap.jobs:
            job_id, status = str(job.get("jobId")), job.get("status")
            if status not in ("completed", "failed") or known.get(job_id) in FINISHED or job_id in mine:
                continue
            name = job.get("filename") or job_id
            if status == "completed":
                self.notify("Transcription finished", f"{name} is ready.")
            else:
                error = job.get("error") or "unknown error"
                self.notify("Transcription failed", f"{name}: {error}", critical=True)

    def _notify_peers(self, snap: Snapshot) -> None:
        current = {str(p.get("id")): str(p.get("name") or p.get("id")) for p in snap.peers_up}
        known = self._known_peers
        self._known_peers = current
        if known is None or not self.desktop.notify_peers:
            return
        for peer_id, name in current.items():
            if peer_id not in known:
                self.notify("Peer joined", f"{name} joined the cluster.")
        for peer_id, name in known.items():
            if peer_id not in current:
                self.notify("Peer left", f"{name} left the cluster.")

    # --- actions ---------------------------------------------------------------------------
    def start_node(self) -> None:
        self.sup.start()
        self.refresh()

    def stop_node(self) -> None:
        self.sup.stop()
        self.refresh()

    # --- transcribing ------------------------------------------------------------------------
    def transcribe_files(self) -> list[str]:
        """"Transcribe file…": pick one or more files; each becomes a job on the tray's node."""
        parent = self.load_window if self.load_window is not None and self.load_window.isVisible() else None
        folder = self.transcripts.settings.value("recent/folder") or str(Path.home())
        paths, _ = QFileDialog.getOpenFileNames(parent, "Transcribe files", str(folder), AUDIO_FILTER)
        if paths:
            self.transcripts.settings.setValue("recent/folder", str(Path(paths[0]).parent))
            self.transcripts.add_files(paths)
            if self.sup.state not in (State.RUNNING, State.STARTING):
                self.notify("The node is not running",
                            "Start it from the menu: the files are sent when it runs.")
        return list(paths)

    def _transcript_finished(self, key: str) -> None:
        entry = self.transcripts.get(key)
        if entry is None:
            return
        self._last_finished = key
        if entry.status == "completed":
            self.notify("Transcription finished", f"{entry.filename} is ready.")
        else:
            self.notify("Transcription failed", f"{entry.filename}: {entry.error or entry.status}", critical=True)

    def _message_clicked(self) -> None:
        if self._last_finished and self.transcripts.get(self._last_finished) is not None:
            self.open_transcript(self._last_finished)

    def open_transcript(self, key: str):
        from .transcript_window import TranscriptWindow

        entry = self.transcripts.get(key)
        if entry is None:
            return None
        window = self.viewers.get(id(entry))
        if window is None:
            window = TranscriptWindow(self.transcripts, entry)
            self.viewers[id(entry)] = window
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def _drop_viewers(self) -> None:
        """Close the view of an entry removed from the list."""
        alive = {id(e) for e in self.transcripts.entries}
        for key in [k for k in self.viewers if k not in alive]:
            self.viewers.pop(key).close()

    def fill_recent_menu(self) -> None:
        from .transcript_window import copy_text, save_dialog

        menu = self.recent_menu
        menu.clear()
        entries = self.transcripts.entries
        menu.menuAction().setEnabled(bool(entries))
        for entry in entries:
            key = entry.key
            sub = menu.addMenu(f"{entry.filename} — {entry.status_text()}")
            open_action = sub.addAction("Open", lambda key=key: self.open_transcript(key))
            open_action.setEnabled(entry.job_id is not None and entry.status != "gone")
            copy_action = sub.addAction("Copy text", lambda key=key: copy_text(self.transcripts, key))
            copy_action.setEnabled(bool(entry.text))
            for ext in SAVE_FORMATS:
                save = sub.addAction(f"Save as {ext.upper()}…",
                                     lambda key=key, ext=ext: save_dialog(self.transcripts, key, ext))
                save.setEnabled(entry.done)
            sub.addSeparator()
            sub.addAction("Remove from list", lambda key=key: self.transcripts.remove(key))

    def show_load(self) -> None:
        from .load_window import LoadWindow

        if self.load_window is None:
            menu_actions = () if self.system_tray else (
                self.start_action, self.stop_action, self.transcribe_action, self.docs_action,
                self.settings_action, self.logs_action, self.quit_action)
            self.load_window = LoadWindow(
                self.sup, transcripts=self.transcripts, transcribe_action=self.transcribe_action,
                open_entry=self.open_transcript, menu_actions=menu_actions, no_tray=not self.system_tray,
                on_close=None if self.system_tray else self.quit)
        self.load_window.show()
        self.load_window.raise_()
        self.load_window.activateWindow()

    def open_docs(self) -> None:
        if self.sup.url:
            self.opener(QUrl(f"{self.sup.url}/schema"))

    def show_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        if self.settings_dialog is None:
            self.settings_dialog = SettingsDialog(self.config, self.sup)
            self.settings_dialog.saved.connect(self._settings_saved)
        else:
            self.settings_dialog.load()
        self.settings_dialog.show()
        self.settings_dialog.raise_()
        self.settings_dialog.activateWindow()

    def _settings_saved(self) -> None:
        self.desktop = self.config.desktop()
        self.sup.stop_timeout = self.desktop.stop_timeout

    def refresh_login_check(self) -> None:
        enabled = False
        if self.autostart is not None:
            try:
                enabled = self.autostart.is_enabled()
            except Exception:
                log.exception("cannot read the login item")
        self.login_action.setEnabled(self.autostart is not None)
        self.login_action.blockSignals(True)
        self.login_action.setChecked(enabled)
        self.login_action.blockSignals(False)

    def set_start_at_login(self, enabled: bool) -> None:
        if self.autostart is None:
            return
        try:
            if enabled:
                self.autostart.enable()
            else:
                self.autostart.disable()
        except Exception as exc:
            log.exception("cannot change the login item")
            self.notify("Start at login", f"Could not change it: {exc}", critical=True)
        self.refresh_login_check()

    def log_dir(self) -> Path:
        if self.sup.log_dir is not None:
            return self.sup.log_dir
        try:
            return Path(effective_settings().log_dir)
        except ConfigError:
            from sayit_node.config import default_log_dir

            return default_log_dir()

    def open_logs(self) -> None:
        path = self.log_dir()
        path.mkdir(parents=True, exist_ok=True)
        self.opener(QUrl.fromLocalFile(str(path)))

    def quit(self) -> None:
        """Stop the node the tray started (gracefully, then killed), then leave. A node the
        tray only attached to keeps running: it was there before the tray."""
        if self.quitting:
            return
        self.quitting = True
        self.refresh()
        if self.sup.process is None:
            self._finish_quit()
            return
        self.sup.stop()
        # Should the stop hang for any reason, leave anyway (stop_now kills).
        QTimer.singleShot(int((self.sup.stop_timeout + 5) * 1000), self._finish_quit)

    def _finish_quit(self) -> None:
        if getattr(self, "_quit_done", False):
            return
        self._quit_done = True
        self.sup.stop_now(timeout=2.0)
        self.icon.hide()
        self.transcripts.close()
        for viewer in self.viewers.values():
            viewer.close()
        if self.load_window is not None:
            self.load_window.close()
        if self.settings_dialog is not None:
            self.settings_dialog.close()
        self.quit_app()

    # --- clicks ----------------------------------------------------------------------------
    def _activated(self, reason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger,
                      QSystemTrayIcon.ActivationReason.DoubleClick):
            self.show_load()

    def on_second_instance(self) -> None:
        if self.system_tray:
            self.notify("SayIt is already running", "Its icon is in the system tray.")
        self.show_load()
