"""The tray app on a real X display (Xvfb + trayer), driven like a person would: a right-click on
the tray icon, a click on "Transcribe file…" in its menu (the file dialog answers with the path),
then Open and "Save as SRT…" (the save dialog answers with a path). Run by
test_xvfb_transcribe.py as a separate process (Qt's xcb platform); writes what it saw as JSON.

usage: python -m tests.desktop.xvfb_transcribe_app AUDIO SRT_OUT RESULT_JSON SCREENSHOT
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication, QFileDialog

from sayit_desktop.settings_store import ConfigFile
from sayit_desktop.supervisor import State, Supervisor
from sayit_desktop.tray import Tray


def main() -> int:
    audio, srt_out, result_path, screenshot = (Path(a) for a in sys.argv[1:5])
    app = QApplication(["sayit-desktop"])
    app.setQuitOnLastWindowClosed(False)
    result: dict = {"steps": []}

    def pump(seconds: float) -> None:
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    def pump_until(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            pump(0.05)
        result["steps"].append(what)

    def xdotool(*args: str) -> None:
        subprocess.run(["xdotool", *args], check=True, timeout=20)

    picked = []
    QFileDialog.getOpenFileNames = staticmethod(lambda *a, **k: (picked.append(a) or [str(audio)], ""))
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(srt_out), a[-1] if a else ""))

    sup = Supervisor()
    tray = Tray(sup, config=ConfigFile(), autostart=None, opener=lambda url: None)
    try:
        result["system_tray_available"] = tray.icon.isSystemTrayAvailable()
        tray.show()
        sup.start()
        pump_until(lambda: sup.state == State.RUNNING, 90, "node running")
        pump_until(lambda: tray.icon.geometry().width() > 1, 20, "icon embedded")
        pump(0.7)

        # A real right-click on the icon, then a real click on "Transcribe file…".
        icon = tray.icon.geometry().center()
        xdotool("mousemove", str(icon.x()), str(icon.y()), "click", "3")
        pump_until(lambda: tray.menu.isVisible(), 10, "menu open")
        pump(0.3)
        item = tray.menu.actionGeometry(tray.transcribe_action).center()
        at = tray.menu.mapToGlobal(item)
        xdotool("mousemove", str(at.x()), str(at.y()), "click", "1")
        pump_until(lambda: bool(tray.transcripts.entries), 10, "file picked from the menu")
        result["dialog_calls"] = len(picked)
        entry = tray.transcripts.entries[0]

        tray.show_load()
        statuses = []
        tray.transcripts.changed.connect(lambda _k: statuses.append(entry.status_text()))
        pump_until(lambda: entry.done, 180, "transcript done")
        result["statuses"] = statuses
        result["messages"] = tray.messages

        row_open = tray.load_window.recent.button(0, "Open")
        row_open.click()
        viewer = tray.viewers[id(entry)]
        pump_until(lambda: viewer.isVisible(), 5, "viewer shown")
        viewer.move(420, 80)
        tray.load_window.move(10, 40)
        pump(0.8)
        result["viewer_title"] = viewer.windowTitle()
        result["viewer_text"] = viewer.text.toPlainText()
        app.primaryScreen().grabWindow(0).save(str(screenshot))

        save = {a.text(): a for a in viewer.save_button.menu().actions()}["Save as SRT…"]
        save.trigger()
        pump_until(srt_out.exists, 20, "srt saved")
        result["job_id"] = entry.job_id
    except Exception as exc:  # reported to the test, which fails with it
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        result_path.write_text(json.dumps(result, indent=2), encoding="utf-8")
        tray.transcripts.close()
        sup.stop_now(timeout=10)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
