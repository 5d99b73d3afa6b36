"""A transcript in a window (timestamped lines, growing while the job runs), and the copy and
save-as steps shared by this window, the load window and the tray menu."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .icons import state_icon
from .transcripts import SAVE_FORMATS, Entry, Transcripts


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def timestamped(entry: Entry) -> str:
    """The transcript as "[m:ss]  text" lines once done; the text so far while it runs."""
    segments = (entry.transcript or {}).get("segments") or []
    if segments:
        # A diarized job's segments carry a speaker ("Speaker 1"): shown before the text.
        return "\n".join(f"[{clock(float(s.get('start') or 0))}]  "
                         f"{s['speaker'] + ': ' if s.get('speaker') else ''}{str(s.get('text') or '').strip()}"
                         for s in segments)
    return entry.text


def copy_text(transcripts: Transcripts, key: str) -> bool:
    entry = transcripts.get(key)
    if entry is None or not entry.text:
        return False
    QApplication.clipboard().setText(entry.text)
    return True


def save_dialog(transcripts: Transcripts, key: str, ext: str, parent: QWidget | None = None) -> str | None:
    """Ask where to save (the file dialog), then have the node render the format and write it
    off the UI thread. Returns the chosen path (None: cancelled)."""
    entry = transcripts.get(key)
    if entry is None:
        return None
    _fmt, filter_text = SAVE_FORMATS[ext]
    folder = Path(entry.path).parent if entry.path and Path(entry.path).parent.is_dir() else Path.home()
    suggested = str(folder / f"{Path(entry.filename).stem}.{ext}")
    path, _ = QFileDialog.getSaveFileName(parent, f"Save the transcript as {ext.upper()}", suggested, filter_text)
    if not path:
        return None
    if not Path(path).suffix:
        path += f".{ext}"
    transcripts.save_as(key, ext, path)
    return path


def save_menu(transcripts: Transcripts, key_of, parent: QWidget | None = None) -> QMenu:
    """"Save as TXT/SRT/VTT…" for the entry `key_of()` names."""
    menu = QMenu(parent)
    for ext in SAVE_FORMATS:
        action = QAction(f"Save as {ext.upper()}…", menu)
        action.triggered.connect(lambda _=False, ext=ext: save_dialog(transcripts, key_of(), ext, parent))
        menu.addAction(action)
    return menu


def menu_button(button: QToolButton, menu: QMenu) -> QToolButton:
    """A tool button that opens `menu`, with a ▾ in its text (the style's own arrow is drawn over
    the text in a narrow button)."""
    button.setText(button.text().rstrip(" ▾…") + " ▾")
    button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    button.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0px; }")
    button.setMenu(menu)
    return button


class TranscriptWindow(QWidget):
    def __init__(self, transcripts: Transcripts, entry: Entry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.transcripts = transcripts
        self.entry = entry
        self.setWindowIcon(state_icon("app"))
        self.resize(640, 480)

        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFont("DejaVu Sans", 10))
        self.text.setAccessibleName("Transcript")

        self.copy_button = QPushButton("Copy text")
        self.copy_button.clicked.connect(self.copy)
        self.save_button = QToolButton()
        self.save_button.setText("Save as")
        menu_button(self.save_button, save_menu(transcripts, lambda: self.entry.key, self))
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.save_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.progress)
        layout.addWidget(self.text, 1)
        layout.addLayout(buttons)

        transcripts.changed.connect(self._changed)
        self.refresh()

    def _changed(self, key: str) -> None:
        if key == self.entry.key:
            self.refresh()

    def refresh(self) -> None:
        entry = self.entry
        self.setWindowTitle(f"{entry.filename} — SayIt")
        self.title.setText(f"<b>{entry.filename}</b>")
        self.status.setText(entry.status_text())
        self.progress.setValue(int(round(entry.progress)))
        self.progress.setVisible(entry.active)
        text = timestamped(entry)
        if text != self.text.toPlainText():
            self.text.setPlainText(text)
        self.copy_button.setEnabled(bool(entry.text))
        self.save_button.setEnabled(entry.done)

    def copy(self) -> None:
        if copy_text(self.transcripts, self.entry.key):
            self.status.setText("Copied to the clipboard")
