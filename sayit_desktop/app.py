"""`sayit-desktop`: the QApplication, one instance at a time, the tray and its node."""

from __future__ import annotations

import argparse
import gc
import getpass
import hashlib
import logging
import logging.handlers
import os
import signal
import sys
from pathlib import Path

from PySide6.QtCore import QDir, QLockFile, QObject, QTimer, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from . import __version__
from .autostart import for_platform
from .icons import app_icon, icon_path
from .settings_store import ConfigError, ConfigFile, effective_settings
from .supervisor import Supervisor
from .tray import Tray

log = logging.getLogger("sayit_desktop")


class SingleInstance(QObject):
    """A lock file makes this the only instance (per user and config file); a local socket lets
    a second instance tell the first one to show itself."""

    activated = Signal()

    def __init__(self, key: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        digest = hashlib.sha1(f"{getpass.getuser()}:{key}".encode()).hexdigest()[:12]
        self.name = f"sayit-desktop-{digest}"
        self.lock = QLockFile(os.path.join(QDir.tempPath(), f"{self.name}.lock"))
        self.lock.setStaleLockTime(0)  # a lock whose process is gone is stale at once
        self.server: QLocalServer | None = None

    def acquire(self) -> bool:
        if not self.lock.tryLock(100):
            return False
        QLocalServer.removeServer(self.name)  # a socket left by a killed instance
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._connection)
        if not self.server.listen(self.name):
            log.warning("cannot listen on %s: %s", self.name, self.server.errorString())
        return True

    def _connection(self) -> None:
        while self.server is not None and self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()
            sock.disconnectFromServer()
            self.activated.emit()

    def notify_running(self) -> bool:
        sock = QLocalSocket()
        sock.connectToServer(self.name)
        ok = sock.waitForConnected(1000)
        if ok:
            sock.write(b"show\n")
            sock.waitForBytesWritten(500)
            sock.disconnectFromServer()
        return ok

    def release(self) -> None:
        if self.server is not None:
            self.server.close()
        self.lock.unlock()


def setup_logging(level: str) -> Path | None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if sys.stderr is not None:  # None in the windowed (frozen) app on Windows and macOS
        console = logging.StreamHandler()
        console.setFormatter(fmt)
        root.addHandler(console)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    try:
        log_dir = Path(effective_settings().log_dir)
    except ConfigError:
        from sayit_node.config import default_log_dir

        log_dir = default_log_dir()
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(log_dir / "desktop.log", maxBytes=2_000_000,
                                                       backupCount=2, encoding="utf-8")
        handler.setFormatter(fmt)
        root.addHandler(handler)
        return log_dir
    except OSError:
        return None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sayit-desktop", description="SayIt tray app")
    parser.add_argument("--version", action="version", version=f"sayit-desktop {__version__}")
    parser.add_argument("--no-start", action="store_true",
                        help="do not start the node now (a node already running is still attached)")
    parser.add_argument("--log-level", default=os.environ.get("SAYIT_DESKTOP_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # argv[0] names the X11 window class (WM_CLASS) and the Wayland app id.
    app = QApplication.instance() or QApplication(["sayit-desktop"])
    app.setApplicationName("SayIt")
    app.setApplicationDisplayName("SayIt")
    app.setDesktopFileName("org.sayit.desktop")
    app.setQuitOnLastWindowClosed(False)
    app.setWindowIcon(app_icon())

    config = ConfigFile()
    instance = SingleInstance(str(config.path.resolve()))
    if not instance.acquire():
        told = instance.notify_running()
        print("SayIt is already running" + ("" if told else " (it did not answer)"), file=sys.stderr)
        return 0

    setup_logging(args.log_level)
    log.info("sayit-desktop %s (pid %d), config %s", __version__, os.getpid(), config.path)
    desktop = config.desktop()
    supervisor = Supervisor(stop_timeout=desktop.stop_timeout)
    icon = icon_path("app", 256)
    # No tray (a bare X session, some GNOME set-ups): the window carries the menu, and closing it
    # quits. Offscreen/minimal platforms (tests, screenshots) have no tray and nobody to tell.
    system_tray = QSystemTrayIcon.isSystemTrayAvailable() or app.platformName() in ("offscreen", "minimal")
    tray = Tray(supervisor, config=config, system_tray=system_tray,
                autostart=for_platform(icon=icon if icon.is_file() else None))
    instance.activated.connect(tray.on_second_instance)

    # SIGTERM / SIGINT / SIGHUP: leave the way Quit does (stopping the node first).
    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, lambda *_: QTimer.singleShot(0, tray.quit))
    wake = QTimer()  # lets Python run its signal handlers while Qt waits
    wake.timeout.connect(lambda: None)
    wake.start(200)
    # Python's cyclic garbage collector may run on any thread (the HTTP workers too), and a
    # Qt widget must be deleted on the UI thread: collect only here, from a timer.
    gc.disable()
    collector = QTimer()
    collector.timeout.connect(lambda: gc.collect())
    collector.start(5000)

    tray.show()  # the icon, or (no tray) the window with the menu's actions
    start = desktop.start_node_on_launch and not args.no_start
    QTimer.singleShot(0, lambda: supervisor.start(attach_only=not start))

    try:
        rc = app.exec()
    finally:
        supervisor.stop_now(timeout=5.0)  # no orphan, whatever ended the loop
        instance.release()
    log.info("sayit-desktop exits")
    return rc


if __name__ == "__main__":
    sys.exit(main())
