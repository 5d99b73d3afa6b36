"""The "Recent transcripts" list of the load window: the tray's own jobs with live progress and,
per job, open / copy / save as / remove."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
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

from .transcript_window import copy_text, menu_button, save_menu
from .transcripts import Transcripts

COLUMNS = ("File", "Status", "Progress", "")


class RecentPanel(QWidget):
    def __init__(self, transcripts: Transcripts, transcribe_action: QAction | None,
                 open_entry: Callable[[str], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.transcripts = transcripts
        self.open_entry = open_entry

        self.transcribe_button = QToolButton()
        self.transcribe_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        if transcribe_action is not None:
            self.transcribe_button.setDefaultAction(transcribe_action)
        hint = QLabel("or drop audio files onto this window")
        hint.setStyleSheet("color: gray")
        top = QHBoxLayout()
        top.addWidget(self.transcribe_button)
        top.addWidget(hint, 1)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Fixed)
        self.table.setMinimumHeight(header.sizeHint().height() + 3 * 34)
        self.table.cellDoubleClicked.connect(lambda row, _col: self._open_row(row))
        self.empty = QLabel("No transcripts yet.")
        self.empty.setStyleSheet("color: gray")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.empty)

        transcripts.list_changed.connect(self.rebuild)
        transcripts.changed.connect(self.update_entry)
        self.rebuild()

    # --- rows ----------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return [e.key for e in self.transcripts.entries]

    def rebuild(self) -> None:
        entries = self.transcripts.entries
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            self.table.setItem(row, 0, QTableWidgetItem(entry.filename))
            self.table.item(row, 0).setToolTip(entry.path)
            bar = QProgressBar()
            bar.setRange(0, 100)
            self.table.setCellWidget(row, 2, bar)
            buttons = self._buttons(entry.key)
            self.table.setCellWidget(row, 3, buttons)
            # The buttons' own width (a column sized to its items would clip them).
            self.table.setColumnWidth(3, max(self.table.columnWidth(3), buttons.sizeHint().width()))
            self._fill(row, entry)
        self.empty.setVisible(not entries)
        self.table.setVisible(bool(entries))

    def _buttons(self, key: str) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(2, 0, 2, 0)
        row.setSpacing(2)
        key_of = lambda: key  # noqa: E731 - fixed per row; rows are rebuilt when keys change
        for name, slot in (("Open", lambda: self.open_entry(key)),
                           ("Copy", lambda: copy_text(self.transcripts, key)),
                           ("Save as", None),
                           ("✕", lambda: self.transcripts.remove(key))):
            button = QToolButton()
            button.setText(name)
            button.setObjectName(name)
            if slot is None:
                menu_button(button, save_menu(self.transcripts, key_of, self))
            else:
                button.clicked.connect(lambda _=False, slot=slot: slot())
            button.setAccessibleName({"Open": "Open the transcript", "Copy": "Copy the text",
                                      "Save as": "Save the transcript as", "✕": "Remove from the list"}[name])
            if name == "✕":
                button.setToolTip("Remove from this list (the node keeps the job until its retention ends)")
            row.addWidget(button)
        return box

    def _fill(self, row: int, entry) -> None:
        status = QTableWidgetItem(entry.status_text())
        if entry.status in ("failed", "gone"):
            status.setForeground(Qt.GlobalColor.red)
        status.setToolTip(entry.status_text())
        self.table.setItem(row, 1, status)
        bar = self.table.cellWidget(row, 2)
        if isinstance(bar, QProgressBar):
            if entry.status == "uploading":
                bar.setRange(0, 0)  # busy: the size of the upload is not known here
            else:
                bar.setRange(0, 100)
                bar.setValue(100 if entry.status == "completed" else int(round(entry.progress)))
        buttons = self.table.cellWidget(row, 3)
        if buttons is not None:
            for button in buttons.findChildren(QToolButton):
                name = button.objectName()
                if name == "Open":
                    button.setEnabled(entry.job_id is not None and entry.status != "gone")
                elif name == "Copy":
                    button.setEnabled(bool(entry.text))
                elif name == "Save as":
                    button.setEnabled(entry.done)

    def update_entry(self, key: str) -> None:
        for row, entry in enumerate(self.transcripts.entries):
            if entry.key == key:
                self._fill(row, entry)
                return

    def _open_row(self, row: int) -> None:
        entries = self.transcripts.entries
        if 0 <= row < len(entries) and entries[row].job_id:
            self.open_entry(entries[row].key)

    # --- for tests and screenshots -------------------------------------------------------------
    def statuses(self) -> list[str]:
        return [self.table.item(r, 1).text() for r in range(self.table.rowCount()) if self.table.item(r, 1)]

    def button(self, row: int, name: str) -> QToolButton | None:
        box = self.table.cellWidget(row, 3)
        return box.findChild(QToolButton, name) if box is not None else None
