"""The load window: this node's load, its peers and the current jobs, refreshed with every
poll of the supervisor (about once a second; the polls run off the UI thread)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .client import Snapshot
from .icons import state_icon
from .supervisor import State, Supervisor
from .tray import status_line

PEER_COLUMNS = ("Name", "Engine", "Cores", "Load", "State", "Last seen")
JOB_COLUMNS = ("File", "Status", "Progress", "Chunks", "ETA")
MAX_FINISHED_SHOWN = 5


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "—"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def ago(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "—"
    try:
        when = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return str(iso)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = ((now or datetime.now(timezone.utc)) - when).total_seconds()
    if seconds < 2:
        return "now"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


def eta(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(round(float(seconds))))
    return f"{seconds} s" if seconds < 90 else f"{seconds // 60} min {seconds % 60:02d} s"


def _table(columns) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setAlternatingRowColors(True)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    table.setMinimumHeight(table.horizontalHeader().sizeHint().height() + 3 * 30)
    return table


NO_TRAY_NOTICE = ("There is no system tray on this desktop, so SayIt's menu is here. "
                  "Closing this window quits SayIt and stops its node.")


def dropped_files(mime) -> list[Path]:
    """Local files (not folders) among dragged URLs."""
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile() and Path(u.toLocalFile()).is_file()]


class LoadWindow(QWidget):
    """The node's load, peers and jobs; with `transcripts`, also "Transcribe file…", drops of
    audio files and the recent transcripts. With `no_tray`, it also carries the tray menu's
    actions (`menu_actions`) and closing it calls `on_close` (the app quits)."""

    def __init__(self, supervisor: Supervisor, parent: QWidget | None = None, *, transcripts=None,
                 transcribe_action: QAction | None = None, open_entry: Callable[[str], None] | None = None,
                 menu_actions: Sequence[QAction] = (), no_tray: bool = False,
                 on_close: Callable[[], None] | None = None) -> None:
        super().__init__(parent)
        self.sup = supervisor
        self.transcripts = transcripts
        self.on_close = on_close
        self.setWindowTitle("SayIt" if no_tray else "SayIt — Load")
        self.setWindowIcon(state_icon("app"))
        self.resize(760, 700 if transcripts is not None else 560)

        self.state_icon = QLabel()
        self.state_text = QLabel()
        self.state_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        head = QHBoxLayout()
        head.addWidget(self.state_icon)
        head.addWidget(self.state_text, 1)

        self.cpu = QLabel("—")
        self.memory = QLabel("—")
        self.chunks = QLabel("—")
        self.jobs_summary = QLabel("—")
        self.speed = QLabel("—")
        stats = QGroupBox("This node")
        form = QFormLayout(stats)
        form.addRow("CPU", self.cpu)
        form.addRow("Memory", self.memory)
        form.addRow("Chunks", self.chunks)
        form.addRow("Jobs", self.jobs_summary)
        form.addRow("Recent speed", self.speed)

        self.peers = _table(PEER_COLUMNS)
        peers_box = QGroupBox("Nodes")
        QVBoxLayout(peers_box).addWidget(self.peers)

        self.jobs = _table(JOB_COLUMNS)
        jobs_box = QGroupBox("Jobs")
        QVBoxLayout(jobs_box).addWidget(self.jobs)

        layout = QVBoxLayout(self)
        self.notice = None
        self.menu_buttons: list[QToolButton] = []
        if no_tray:
            self.notice = QLabel(NO_TRAY_NOTICE)
            self.notice.setWordWrap(True)
            self.notice.setStyleSheet("background: #fff4ce; color: #3b2f00; padding: 6px; border-radius: 4px")
            layout.addWidget(self.notice)
            bar = QHBoxLayout()
            for action in menu_actions:
                button = QToolButton()
                button.setDefaultAction(action)
                self.menu_buttons.append(button)
                bar.addWidget(button)
            bar.addStretch(1)
            layout.addLayout(bar)
        self.message = QLabel()  # notifications, when there is no tray to show them
        self.message.setWordWrap(True)
        self.message.hide()
        layout.addLayout(head)
        layout.addWidget(self.message)
        self.recent = None
        if transcripts is not None:
            from .recent_panel import RecentPanel

            self.recent = RecentPanel(transcripts, transcribe_action, open_entry or (lambda key: None))
            recent_box = QGroupBox("Recent transcripts")
            QVBoxLayout(recent_box).addWidget(self.recent)
            layout.addWidget(recent_box, 2)
            self.setAcceptDrops(True)
        layout.addWidget(stats)
        layout.addWidget(peers_box, 1)
        layout.addWidget(jobs_box, 1)

        self.sup.state_changed.connect(self._state_changed)
        self.sup.snapshot_ready.connect(self.update_snapshot)
        self._state_changed()
        if self.sup.last_snapshot is not None:
            self.update_snapshot(self.sup.last_snapshot)

    # --- updates ---------------------------------------------------------------------------
    def _state_changed(self, *_args) -> None:
        sup = self.sup
        self.state_icon.setPixmap(state_icon(sup.display_state).pixmap(32, 32))
        text = f"<b>{status_line(sup)}</b>"
        if sup.url and sup.state in (State.RUNNING, State.STARTING):
            text += f"<br><span style='color:gray'>{sup.url}</span>"
        if sup.state == State.ERROR or not sup.responding:
            text += f"<br><span style='color:#b8282a'>{sup.detail}</span>"
        self.state_text.setText(text)
        if sup.state != State.RUNNING:
            for label in (self.cpu, self.memory, self.chunks, self.jobs_summary, self.speed):
                label.setText("—")
            self.peers.setRowCount(0)
            self.jobs.setRowCount(0)

    def update_snapshot(self, snap: Snapshot) -> None:
        self._state_changed()
        load = snap.load
        cpu = load.get("cpu")
        self.cpu.setText(f"{float(cpu):.0f} %" if cpu is not None else "—")
        self.memory.setText(human_bytes(load.get("memory")))
        self.chunks.setText(f"{snap.active_chunks} active · {snap.queued_chunks} queued")
        failed = snap.job_count("failed")
        finished = snap.job_count("completed") + failed + snap.job_count("cancelled")
        summary = (f"{snap.job_count('running')} running · {snap.job_count('queued')} queued · "
                   f"{finished} finished")
        if failed:
            summary += f" ({failed} failed)"
        self.jobs_summary.setText(summary)
        speed = load.get("speed")
        self.speed.setText(f"{float(speed):.1f} audio-s/s" if speed is not None else "—")
        self._fill_peers(snap)
        self._fill_jobs(snap)

    def _fill_peers(self, snap: Snapshot) -> None:
        nodes = sorted(snap.nodes, key=lambda n: (not n.get("self"), str(n.get("name", ""))))
        self.peers.setRowCount(len(nodes))
        for row, node in enumerate(nodes):
            load = node.get("load") or {}
            name = str(node.get("name") or node.get("id") or "?")
            if node.get("self"):
                name += " (this node)"
            cpu = load.get("cpu")
            load_text = (f"{float(cpu):.0f}% CPU · " if cpu is not None else "") + \
                f"{load.get('activeChunks', 0)} active · {load.get('queuedChunks', 0)} queued"
            engine = str(node.get("engine") or "—")
            if node.get("device"):  # cpu, cuda, metal (SAYIT_DEVICE)
                engine += f" · {node['device']}"
            cells = (name, engine, str(node.get("cores") or "—"), load_text,
                     str(node.get("state") or "—"),
                     "now" if node.get("self") else ago(node.get("lastSeen")))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 4 and node.get("state") not in ("up", None):
                    item.setForeground(Qt.GlobalColor.red)
                self.peers.setItem(row, col, item)

    def _fill_jobs(self, snap: Snapshot) -> None:
        active = [j for j in snap.jobs if j.get("status") in ("queued", "running")]
        done = [j for j in snap.jobs if j.get("status") not in ("queued", "running")]
        jobs = active + done[:MAX_FINISHED_SHOWN]
        self.jobs.setRowCount(len(jobs))
        for row, job in enumerate(jobs):
            name = str(job.get("filename") or job.get("jobId") or "?")
            total = job.get("totalChunks") or 0
            chunks = f"{job.get('completedChunks', 0)}/{total}" if total else "—"
            if job.get("failedChunks"):
                chunks += f" ({job['failedChunks']} failed)"
            status = str(job.get("status") or "?")
            if status == "failed" and job.get("error"):
                status = f"failed: {job['error']}"
            cells = {0: name, 1: status, 3: chunks,
                     4: eta(job.get("etaSeconds")) if job.get("status") in ("queued", "running") else "—"}
            for col, text in cells.items():
                self.jobs.setItem(row, col, QTableWidgetItem(text))
            bar = self.jobs.cellWidget(row, 2)
            if not isinstance(bar, QProgressBar):
                bar = QProgressBar()
                bar.setRange(0, 100)
                bar.setTextVisible(True)
                self.jobs.setCellWidget(row, 2, bar)
            bar.setValue(int(round(float(job.get("progress") or 0))))

    # --- drops, messages, closing ------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if self.transcripts is not None and dropped_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        files = dropped_files(event.mimeData()) if self.transcripts is not None else []
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.transcripts.add_files(files)

    def show_message(self, title: str, text: str, critical: bool = False) -> None:
        colour = "#b8282a" if critical else "#1d5e2a"
        self.message.setText(f"<b style='color:{colour}'>{title}</b> — {text}")
        self.message.show()

    def closeEvent(self, event) -> None:
        event.accept()
        if self.on_close is not None:
            self.on_close()

    # --- for tests and screenshots ---------------------------------------------------------
    def progress_values(self) -> list[int]:
        return [self.jobs.cellWidget(r, 2).value() for r in range(self.jobs.rowCount())
                if isinstance(self.jobs.cellWidget(r, 2), QProgressBar)]

    def peer_names(self) -> list[str]:
        return [self.peers.item(r, 0).text() for r in range(self.peers.rowCount())]
