"""PySide6 6.12 on Python 3.11 drops a reference to None/True on every void call or emit; the
app must survive hours of once-a-second updates (see sayit_desktop/_refcount_guard.py)."""

from __future__ import annotations

import subprocess
import sys

from .helpers import REPO

PROGRAM = """
import sys
import sayit_desktop  # applies the guard where it is needed
from PySide6.QtCore import QCoreApplication, QObject, Signal
app = QCoreApplication([])
class O(QObject):
    changed = Signal(object)
o = O()
for i in range(200_000):  # > two days of tray updates at a few calls per second
    o.changed.emit(True)
    o.setObjectName("x")
print("alive", sys.getrefcount(None) > 0)
"""


def test_many_qt_calls_do_not_kill_the_interpreter():
    res = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin",
                                           "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "alive True" in res.stdout
