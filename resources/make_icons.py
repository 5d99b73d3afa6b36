#!/usr/bin/env python3
"""Draw the tray icons (one per state, several sizes) and the app icon into resources/icons/,
plus the app icon as sayit.ico (Windows executables, Inno Setup) and sayit.icns (macOS .app):
both are containers of PNG images, written here without any imaging library.

    .venv/bin/python resources/make_icons.py
"""

import os
import struct
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
    pngs = {size: icon_path("app", size).read_bytes() for size in SIZES}
    big = draw_icon("app", 512)
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    big.save(buffer, "PNG")
    pngs[512] = bytes(data.data())
    (RESOURCES / "sayit.ico").write_bytes(ico({s: pngs[s] for s in (16, 24, 32, 48, 64, 128, 256)}))
    (RESOURCES / "sayit.icns").write_bytes(icns(pngs))
    print(f"wrote {len(SIZES) * (len(STATES) + 1)} icons, sayit.ico and sayit.icns to {RESOURCES}")
    return 0


def ico(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico whose images are PNGs (Windows Vista and later read them)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        blob = pngs[size]
        dim = 0 if size >= 256 else size  # 0 means 256
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(blob), offset + len(blobs))
        blobs += blob
    return header + entries + blobs


ICNS_TYPES = {16: b"icp4", 32: b"icp5", 64: b"icp6", 128: b"ic07", 256: b"ic08", 512: b"ic09"}


def icns(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns of PNG images (types icp4..ic09, read by macOS 10.7 and later)."""
    body = b"".join(ICNS_TYPES[size] + struct.pack(">I", 8 + len(pngs[size])) + pngs[size]
                    for size in sorted(pngs) if size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


if __name__ == "__main__":
    sys.exit(main())
