#!/usr/bin/env python3
"""Draw the tray icons (one per state, several sizes) and the app icon into resources/icons/.

    .venv/bin/python resources/make_icons.py
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtGui import QGuiApplication  # noqa: E402

from sayit_desktop.icons import RESOURCES, SIZES, STATES, draw_icon, icon_path  # noqa: E402


def main() -> int:
    app = QGuiApplication([])  # noqa: F841 - painting text/paths needs an application
    RESOURCES.mkdir(parents=True, exist_ok=True)
    for state in (*STATES, "app"):
        for size in SIZES:
            path = icon_path(state, size)
            if not draw_icon(state, size).save(str(path)):
                print(f"cannot write {path}", file=sys.stderr)
                return 1
    print(f"wrote {len(SIZES) * (len(STATES) + 1)} icons to {RESOURCES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
