"""Tray icons: one per state (stopped, starting, idle, busy, error) plus the app icon.

The PNGs in resources/icons/ are drawn by `draw_icon` (see resources/make_icons.py); when the
app runs without that folder (an installed wheel), the same drawing is done at run time.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QLinearGradient, QPainter, QPainterPath, QPen

STATES = ("stopped", "starting", "idle", "busy", "error")
SIZES = (16, 24, 32, 48, 64, 128, 256)
COLOURS = {
    "stopped": ("#9aa3ad", "#6b7480"),
    "starting": ("#f6b44b", "#d9841c"),
    "idle": ("#3cc47c", "#1f8f55"),
    "busy": ("#4c9bf0", "#2360c4"),
    "error": ("#f0605a", "#b8282a"),
    "app": ("#8a6cff", "#4b32c8"),
}
# In the PyInstaller bundle, resources/ sits in the bundle's data folder (sys._MEIPASS).
RESOURCES = Path(getattr(sys, "_MEIPASS", "") or Path(__file__).resolve().parent.parent) / "resources" / "icons"


def icon_path(state: str, size: int) -> Path:
    return RESOURCES / f"tray-{state}-{size}.png"


def draw_icon(state: str, size: int) -> QImage:
    """A rounded tile in the state's colour with a white microphone; sound waves when busy,
    a badge for error (!) and starting (…)."""
    top, bottom = COLOURS[state]
    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = float(size)

    # tile
    margin = s * 0.04
    tile = QRectF(margin, margin, s - 2 * margin, s - 2 * margin)
    grad = QLinearGradient(tile.topLeft(), tile.bottomLeft())
    grad.setColorAt(0.0, QColor(top))
    grad.setColorAt(1.0, QColor(bottom))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(grad)
    p.drawRoundedRect(tile, s * 0.22, s * 0.22)

    white = QColor("#ffffff")
    if state == "stopped":
        white.setAlpha(215)
    cx = s * (0.40 if state == "busy" else 0.5)
    # microphone capsule
    cap_w, cap_h = s * 0.22, s * 0.38
    cap = QRectF(cx - cap_w / 2, s * 0.17, cap_w, cap_h)
    p.setBrush(white)
    p.drawRoundedRect(cap, cap_w / 2, cap_w / 2)
    # stand: a U around the capsule, a stem and a foot
    pen = QPen(white, max(1.0, s * 0.065))
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    arc_w = s * 0.36
    arc = QRectF(cx - arc_w / 2, s * 0.28, arc_w, s * 0.36)
    p.drawArc(arc, 180 * 16, 180 * 16)
    p.drawLine(QPointF(cx, s * 0.64), QPointF(cx, s * 0.76))
    p.drawLine(QPointF(cx - s * 0.12, s * 0.78), QPointF(cx + s * 0.12, s * 0.78))

    if state == "busy":  # sound waves to the right
        wave_pen = QPen(white, max(1.0, s * 0.055))
        wave_pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(wave_pen)
        for r in (0.2, 0.31):
            rect = QRectF(cx + s * 0.02 - s * r, s * 0.40 - s * r, 2 * s * r, 2 * s * r)
            p.drawArc(rect, -35 * 16, 70 * 16)
    if state == "stopped":  # a slash: the mic is off
        slash = QPen(QColor("#4a525c"), max(1.0, s * 0.075))
        slash.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(slash)
        p.drawLine(QPointF(s * 0.27, s * 0.22), QPointF(s * 0.73, s * 0.8))
    if state in ("error", "starting") and size >= 20:
        r = s * 0.2
        centre = QPointF(s - r - margin * 0.5, s - r - margin * 0.5)
        p.setPen(QPen(QColor(bottom), max(1.0, s * 0.04)))
        p.setBrush(white)
        p.drawEllipse(centre, r, r)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(bottom))
        if state == "error":
            bar = QPainterPath()
            bar.addRoundedRect(QRectF(centre.x() - r * 0.14, centre.y() - r * 0.6, r * 0.28, r * 0.75),
                               r * 0.12, r * 0.12)
            p.drawPath(bar)
            p.drawEllipse(QPointF(centre.x(), centre.y() + r * 0.45), r * 0.15, r * 0.15)
        else:
            for dx in (-0.45, 0.0, 0.45):
                p.drawEllipse(QPointF(centre.x() + r * dx, centre.y()), r * 0.15, r * 0.15)
    p.end()
    return img


@lru_cache(maxsize=None)
def state_icon(state: str) -> QIcon:
    if state not in STATES and state != "app":
        state = "error"
    icon = QIcon()
    for size in SIZES:
        path = icon_path(state, size)
        if path.is_file():
            icon.addFile(str(path))
        else:
            from PySide6.QtGui import QPixmap

            icon.addPixmap(QPixmap.fromImage(draw_icon(state, size)))
    return icon


def app_icon() -> QIcon:
    return state_icon("app")
