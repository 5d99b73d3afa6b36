"""The settings dialog: edits config.toml (the file the node reads) and offers a restart."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from sayit_node.config import Settings
from sayit_node.federation.hosted_redis import hosting_problem

from .icons import state_icon
from .settings_store import (
    LAN_HOST,
    LOOPBACK_HOSTS,
    ConfigError,
    ConfigFile,
    DesktopSettings,
    env_overrides,
    redis_mode,
    validate,
)
from .supervisor import State, Supervisor

log = logging.getLogger(__name__)

MODELS = ("tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
          "large-v3", "large-v3-turbo", "distil-large-v3")
LANGUAGES = (("Automatic", None), ("English", "en"), ("German", "de"), ("French", "fr"),
             ("Spanish", "es"), ("Italian", "it"), ("Dutch", "nl"), ("Portuguese", "pt"),
             ("Polish", "pl"), ("Swedish", "sv"), ("Russian", "ru"), ("Ukrainian", "uk"),
             ("Turkish", "tr"), ("Japanese", "ja"), ("Korean", "ko"), ("Chinese", "zh"),
             ("Arabic", "ar"), ("Hindi", "hi"))
INVALID_STYLE = "border: 1px solid #d0312d;"


def _default(field: str) -> Any:
    info = Settings.model_fields.get(field)
    if info is None:
        return None
    return info.get_default(call_default_factory=True)


class SettingsDialog(QDialog):
    saved = Signal()

    def __init__(self, config: ConfigFile, supervisor: Supervisor | None = None,
                 parent: QWidget | None = None, platform: str | None = None) -> None:
        super().__init__(parent)
        # Windows: no native redis-server, so "Host it here" is offered disabled, with the options.
        self.host_redis_problem = hosting_problem(platform)
        self.config = config
        self.sup = supervisor
        self.errors: dict[str, str] = {}
        self.file_values: dict[str, Any] = {}
        self.setWindowTitle("SayIt — Settings")
        self.setWindowIcon(state_icon("app"))

        # --- node ---------------------------------------------------------------------------
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.local_only = QRadioButton("This machine only")
        self.lan = QRadioButton("Local network (LAN)")
        serve_group = QButtonGroup(self)
        serve_group.addButton(self.local_only)
        serve_group.addButton(self.lan)
        serve = QHBoxLayout()
        serve.addWidget(self.local_only)
        serve.addWidget(self.lan)
        serve.addStretch(1)

        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItems(MODELS)
        self.model.setToolTip("A model name (downloaded on first use) or the folder of a model")
        self.language = QComboBox()
        self.language.setEditable(True)
        for label, code in LANGUAGES:
            self.language.addItem(label if code is None else f"{code} — {label}", code)
        self.chunks = QSpinBox()
        self.chunks.setRange(1, 256)
        self.chunks.setToolTip("How many chunks this node transcribes at once")

        node_box = QGroupBox("Node")
        self.node_form = QFormLayout(node_box)
        self.markers: dict[str, QLabel] = {}
        self._row("Port", self.port, "port")
        self._row("Serve", serve, "host")
        self._row("Model", self.model, "model")
        self._row("Default language", self.language, "language")
        self._row("Max concurrent chunks", self.chunks, "max_concurrent_chunks")

        # --- cluster ------------------------------------------------------------------------
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setPlaceholderText("shared by every node of the cluster")
        self.show_secret = QCheckBox("Show")
        self.show_secret.toggled.connect(lambda on: self.secret.setEchoMode(
            QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password))
        self.generate_secret_button = QPushButton("Generate")
        self.generate_secret_button.setToolTip("A new secret of 7 random words (~90 bits); "
                                               "give every node of the cluster the same one")
        self.generate_secret_button.clicked.connect(self.generate_secret)
        secret_row = QHBoxLayout()
        secret_row.addWidget(self.secret, 1)
        secret_row.addWidget(self.show_secret)
        secret_row.addWidget(self.generate_secret_button)
        self.redis_host = QRadioButton("Host it here")
        self.redis_url_mode = QRadioButton("Use a URL")
        self.redis_auto = QRadioButton("Find automatically")
        self.redis_auto.setToolTip("Find the cluster's Redis on the LAN (mDNS), or work alone")
        self.redis_host.setToolTip("Run a Redis server for the cluster on this machine")
        self.redis_host_note = QLabel(self.host_redis_problem or "")
        self.redis_host_note.setWordWrap(True)
        self.redis_host_note.setStyleSheet("color: gray;")
        self.redis_host_note.setVisible(bool(self.host_redis_problem))
        if self.host_redis_problem:
            self.redis_host.setEnabled(False)
            self.redis_host.setToolTip(self.host_redis_problem)
        redis_group = QButtonGroup(self)
        for button in (self.redis_auto, self.redis_host, self.redis_url_mode):
            redis_group.addButton(button)
        redis_modes = QHBoxLayout()
        redis_modes.addWidget(self.redis_auto)
        redis_modes.addWidget(self.redis_host)
        redis_modes.addWidget(self.redis_url_mode)
        redis_modes.addStretch(1)
        self.redis_url = QLineEdit()
        self.redis_url.setPlaceholderText("redis://host:6379/0")
        self.redis_url_mode.toggled.connect(self.redis_url.setEnabled)
        cluster_box = QGroupBox("Cluster")
        self.cluster_form = QFormLayout(cluster_box)
        self._row("Cluster secret", secret_row, "cluster_secret", form=self.cluster_form)
        self._row("Redis", redis_modes, "host_redis", form=self.cluster_form)
        self.cluster_form.addRow("", self.redis_host_note)
        self._row("Redis URL", self.redis_url, "redis_url", form=self.cluster_form)

        # --- API keys -----------------------------------------------------------------------
        self.api_keys = QPlainTextEdit()
        self.api_keys.setPlaceholderText("One key per line. Empty: no key needed.")
        self.api_keys.setFixedHeight(70)
        generate = QPushButton("Generate key")
        generate.clicked.connect(self.generate_key)
        keys_box = QGroupBox("API keys")
        self.keys_form = QFormLayout(keys_box)
        keys_col = QVBoxLayout()
        keys_col.addWidget(self.api_keys)
        keys_col.addWidget(generate)
        self._row("Keys", keys_col, "api_keys", form=self.keys_form)

        # --- desktop ------------------------------------------------------------------------
        self.start_on_launch = QCheckBox("Start the node when SayIt opens")
        self.notify_jobs = QCheckBox("Notify when a job finishes or fails")
        self.notify_peers = QCheckBox("Notify when a peer joins or leaves")
        desktop_box = QGroupBox("Desktop")
        desktop_col = QVBoxLayout(desktop_box)
        for box in (self.start_on_launch, self.notify_jobs, self.notify_peers):
            desktop_col.addWidget(box)

        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #d0312d;")
        self.error_label.setWordWrap(True)
        self.file_label = QLabel()
        self.file_label.setStyleSheet("color: gray;")
        self.file_label.setWordWrap(True)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save_and_close)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        for widget in (node_box, cluster_box, keys_box, desktop_box, self.error_label,
                       self.file_label, self.buttons):
            layout.addWidget(widget)
        self.load()

    def _row(self, label: str, field_widget, key: str, form: QFormLayout | None = None) -> None:
        marker = QLabel()
        marker.setStyleSheet("color: #b86e00;")
        marker.setWordWrap(True)
        marker.hide()
        self.markers[key] = marker
        col = QVBoxLayout()
        col.setSpacing(2)
        if isinstance(field_widget, QWidget):
            col.addWidget(field_widget)
        else:
            col.addLayout(field_widget)
        col.addWidget(marker)
        (form or self.node_form).addRow(label, col)

    # --- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        try:
            values = self.config.node_values()
            self.error_label.clear()
        except ConfigError as exc:
            values = {}
            self.error_label.setText(f"{exc}\nSaving will rewrite the file.")
        self.file_values = values
        desktop = self.config.desktop()

        def get(key):
            return values[key] if key in values else _default(key)

        port = get("port")
        self.port.setValue(int(port) if isinstance(port, int) and 1 <= port <= 65535 else 3000)
        self._host = str(get("host") or "127.0.0.1")
        (self.local_only if self._host in LOOPBACK_HOSTS else self.lan).setChecked(True)
        self.model.setCurrentText(str(get("model") or "tiny.en"))
        language = get("language")
        code = None if language in (None, "", "auto") else str(language)
        index = self.language.findData(code) if code is not None else 0
        if index >= 0:
            self.language.setCurrentIndex(index)
        else:
            self.language.setEditText(code)
        chunks = get("max_concurrent_chunks")
        self.chunks.setValue(int(chunks) if isinstance(chunks, int) else (os.cpu_count() or 1))
        self.secret.setText(str(values.get("cluster_secret") or ""))
        mode = redis_mode(values)
        if mode == "host" and self.host_redis_problem:
            mode = "auto"  # saving writes host_redis = false; the note says why
        {"host": self.redis_host, "url": self.redis_url_mode, "auto": self.redis_auto}[mode].setChecked(True)
        self.redis_url.setText(str(values.get("redis_url") or ""))
        self.redis_url.setEnabled(mode == "url")
        keys = values.get("api_keys") or []
        if isinstance(keys, str):
            keys = [k.strip() for k in keys.split(",") if k.strip()]
        self.api_keys.setPlainText("\n".join(str(k) for k in keys))
        self.start_on_launch.setChecked(desktop.start_node_on_launch)
        self.notify_jobs.setChecked(desktop.notify_jobs)
        self.notify_peers.setChecked(desktop.notify_peers)
        self._desktop = desktop
        self.file_label.setText(f"Saved to {self.config.path}")
        self.mark_overrides()
        self._show_errors({})

    def mark_overrides(self) -> None:
        cwd = self.sup.cwd if self.sup is not None and self.sup.cwd else None
        self.overrides = env_overrides(cwd=Path(cwd) if cwd else None)
        for key, marker in self.markers.items():
            override = self.overrides.get(key)
            if override is None:
                marker.hide()
                marker.clear()
            else:
                marker.setText("⚠ " + override.describe())
                marker.show()

    # --- values ----------------------------------------------------------------------------
    def language_value(self) -> str | None:
        text = self.language.currentText().strip()
        index = self.language.currentIndex()
        if index >= 0 and self.language.itemText(index) == text:
            return self.language.itemData(index)
        code = text.split("—", 1)[0].strip().lower()
        return None if code in ("", "auto", "automatic") else code

    def values(self) -> dict[str, Any]:
        """The node settings as the dialog shows them (None: the key is left out of the file)."""
        if self.local_only.isChecked():
            host = self._host if self._host in LOOPBACK_HOSTS else "127.0.0.1"
        else:
            host = self._host if self._host not in LOOPBACK_HOSTS else LAN_HOST
        keys = [line.strip() for line in self.api_keys.toPlainText().splitlines() if line.strip()]
        return {
            "port": self.port.value(),
            "host": host,
            "model": self.model.currentText().strip(),
            "language": self.language_value(),
            "max_concurrent_chunks": self.chunks.value(),
            "cluster_secret": self.secret.text() or None,
            "host_redis": self.redis_host.isChecked(),
            "redis_url": self.redis_url.text().strip() if self.redis_url_mode.isChecked() else None,
            "api_keys": keys or None,
        }

    def desktop_values(self) -> DesktopSettings:
        d = DesktopSettings(**self._desktop.to_table())
        d.start_node_on_launch = self.start_on_launch.isChecked()
        d.notify_jobs = self.notify_jobs.isChecked()
        d.notify_peers = self.notify_peers.isChecked()
        return d

    def generate_secret(self) -> None:
        from sayit_node.passphrase import generate_secret

        self.secret.setText(generate_secret())
        self.show_secret.setChecked(True)  # it has to be copied to the other nodes

    def generate_key(self) -> None:
        text = self.api_keys.toPlainText().rstrip()
        self.api_keys.setPlainText((text + "\n" if text else "") + "sk-sayit-" + secrets.token_urlsafe(24))

    # --- saving ----------------------------------------------------------------------------
    def _field_widget(self, key: str) -> QWidget | None:
        return {"port": self.port, "model": self.model, "language": self.language,
                "max_concurrent_chunks": self.chunks, "cluster_secret": self.secret,
                "redis_url": self.redis_url, "api_keys": self.api_keys}.get(key)

    def _show_errors(self, errors: dict[str, str]) -> None:
        self.errors = errors
        for key in ("port", "model", "language", "max_concurrent_chunks", "cluster_secret",
                    "redis_url", "api_keys"):
            widget = self._field_widget(key)
            if widget is not None:
                widget.setStyleSheet(INVALID_STYLE if key in errors else "")
                widget.setToolTip(errors.get(key, ""))
        if errors:
            self.error_label.setText("\n".join(errors.values()))
        elif not self.error_label.text().endswith("Saving will rewrite the file."):
            self.error_label.clear()

    def save(self) -> bool:
        """Validate and write config.toml; True when written."""
        values = self.values()
        errors = validate(values)
        self._show_errors(errors)
        if errors:
            return False
        to_write: dict[str, Any] = {}
        for key, value in values.items():
            in_file = key in self.file_values
            if value is None:
                if in_file:
                    to_write[key] = None
            elif in_file or value != _default(key):
                # Defaults the user never set stay out of the file (the node keeps choosing them).
                if key == "host_redis" and not value and not in_file:
                    continue
                to_write[key] = value
        if self.redis_auto.isChecked() and self.file_values.get("discovery") is False:
            to_write["discovery"] = True  # "find automatically" needs mDNS discovery
        changed = {k for k, v in to_write.items() if self.file_values.get(k) != v}
        try:
            self.config.write(to_write, self.desktop_values())
        except (OSError, ConfigError, TypeError) as exc:
            self.error_label.setText(f"Cannot save: {exc}")
            return False
        self.file_values = self.config.node_values()
        self.changed_node_keys = changed
        self.saved.emit()
        if changed and self.sup is not None and self.sup.state in (State.RUNNING, State.STARTING):
            if self.ask_restart(changed):
                self.sup.restart()
        return True

    def ask_restart(self, changed: set[str]) -> bool:
        answer = QMessageBox.question(
            self, "Restart the node?",
            "The node reads its settings when it starts. Restart it now to apply the changes?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes)
        return answer == QMessageBox.StandardButton.Yes

    def save_and_close(self) -> None:
        if self.save():
            self.accept()
