"""A throwaway X session for real-tray tests and screenshots: Xvfb on a free display number,
Debian's `trayer` as the system tray host, xdotool for clicks, Qt itself for screenshots.

Debian packages: xvfb xauth trayer xdotool x11-utils, and Qt's xcb libraries
(libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libxcb-image0
libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-randr0).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = ("Xvfb", "trayer", "xdotool", "xwininfo")
PACKAGES = "xvfb xauth trayer xdotool x11-utils"

_GRAB = """
import sys
from PySide6.QtGui import QGuiApplication
app = QGuiApplication(["sayit-screenshot"])
screen = app.primaryScreen()
x, y, w, h = (int(v) for v in sys.argv[2:6]) if len(sys.argv) > 2 else (0, 0, -1, -1)
ok = screen.grabWindow(0, x, y, w, h).save(sys.argv[1])
sys.exit(0 if ok else 1)
"""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


class XSession:
    def __init__(self, workdir: Path, size: str = "1024x640") -> None:
        self.workdir = Path(workdir)
        self.size = size
        self.display: str | None = None
        self.xvfb: subprocess.Popen | None = None
        self.trayer: subprocess.Popen | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "XSession":
        self.workdir.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        # -displayfd: Xvfb picks a free display number and writes it to us.
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{self.size}x24", "-nolisten", "tcp"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "xvfb.log", "wb"))
        os.close(write_fd)
        number = b""
        deadline = time.monotonic() + timeout
        with os.fdopen(read_fd, "rb") as fh:
            while time.monotonic() < deadline and not number.endswith(b"\n"):
                chunk = fh.read(1)
                if not chunk:
                    break
                number += chunk
        if not number.strip().isdigit():
            self.stop()
            raise RuntimeError(f"Xvfb did not start: {(self.workdir / 'xvfb.log').read_text()[-2000:]}")
        self.display = f":{number.decode().strip()}"
        return self

    def start_tray(self, width: int = 160, height: int = 32, timeout: float = 20.0) -> str:
        """Run trayer at the top right; returns its panel window id."""
        try:
            return self._start_tray(width, height, timeout)
        except RuntimeError:
            if self.trayer is not None and self.trayer.poll() is None:
                self.trayer.kill()
                self.trayer.wait(5)
            return self._start_tray(width, height, timeout)  # once more (it can lose a race at start)

    def _start_tray(self, width: int, height: int, timeout: float) -> str:
        self.trayer = subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", str(width),
             "--heighttype", "pixel", "--height", str(height), "--transparent", "false",
             "--tint", "0x2b2f36", "--SetDockType", "true", "--SetPartialStrut", "true"],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=open(self.workdir / "trayer.log", "wb"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for win in self.search("--name", "^panel$"):
                return win
            if self.trayer.poll() is not None:
                break
            time.sleep(0.1)
        log = (self.workdir / "trayer.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"trayer did not show its panel (exit {self.trayer.poll()}): {log}")

    def stop(self) -> None:
        for proc in (self.trayer, self.xvfb):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def __enter__(self) -> "XSession":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- queries -----------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "XAUTHORITY")}
        env.update(DISPLAY=self.display or "", QT_QPA_PLATFORM="xcb", **extra)
        return env

    def run(self, *args: str, check: bool = True) -> str:
        res = subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=20)
        if check and res.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {res.stderr.strip()}")
        return res.stdout

    def search(self, *args: str) -> list[str]:
        out = self.run("xdotool", "search", *args, check=False)
        return [line.strip() for line in out.splitlines() if line.strip()]

    def parent(self, window: str) -> str:
        """The id of a window's parent, as xdotool prints ids (decimal)."""
        out = self.run("xwininfo", "-id", window, "-children")
        match = re.search(r"Parent window id: (0x[0-9a-f]+)", out)
        return str(int(match.group(1), 16)) if match else ""

    def root(self) -> str:
        out = self.run("xwininfo", "-root")
        return str(int(re.search(r"Window id: (0x[0-9a-f]+)", out).group(1), 16))

    def geometry(self, window: str) -> dict[str, int]:
        """Absolute x, y and size of a window."""
        out = self.run("xwininfo", "-id", window)

        def field(name):
            return int(re.search(rf"{name}:\s+(-?\d+)", out).group(1))

        return {"x": field("Absolute upper-left X"), "y": field("Absolute upper-left Y"),
                "width": field("Width"), "height": field("Height"),
                "mapped": "IsViewable" in out}

    def right_click(self, window: str) -> None:
        g = self.geometry(window)
        self.run("xdotool", "mousemove", "--window", window, str(g["width"] // 2), str(g["height"] // 2),
                 "click", "3")

    def close_window(self, window: str) -> None:
        """Ask a window to close as a window manager's close button does: a WM_DELETE_WINDOW
        client message (xdotool's windowclose destroys the window instead)."""
        import ctypes
        import ctypes.util

        class ClientMessage(ctypes.Structure):
            _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                        ("display", ctypes.c_void_p), ("window", ctypes.c_ulong),
                        ("message_type", ctypes.c_ulong), ("format", ctypes.c_int),
                        ("data", ctypes.c_long * 5)]

        class XEvent(ctypes.Union):
            _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]

        x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XInternAtom.restype = ctypes.c_ulong
        x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long,
                                   ctypes.POINTER(XEvent)]
        x11.XFlush.argtypes = [ctypes.c_void_p]
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        display = x11.XOpenDisplay((self.display or "").encode())
        if not display:
            raise RuntimeError(f"cannot open display {self.display}")
        try:
            event = XEvent()
            event.xclient.type = 33  # ClientMessage
            event.xclient.window = int(window)
            event.xclient.message_type = x11.XInternAtom(display, b"WM_PROTOCOLS", 0)
            event.xclient.format = 32
            event.xclient.data[0] = x11.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
            event.xclient.data[1] = 0  # CurrentTime
            if not x11.XSendEvent(display, int(window), 0, 0, ctypes.byref(event)):
                raise RuntimeError("XSendEvent failed")
            x11.XFlush(display)
        finally:
            x11.XCloseDisplay(display)

    def key(self, name: str) -> None:
        self.run("xdotool", "key", name)

    def screenshot(self, path: Path, x: int = 0, y: int = 0, width: int = -1, height: int = -1) -> Path:
        """The screen (or a part of it) as PNG, grabbed by Qt in a helper process."""
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
            fh.write(_GRAB)
        try:
            subprocess.run([sys.executable, fh.name, str(path), str(x), str(y), str(width), str(height)],
                           env=self.env(), check=True, timeout=30, capture_output=True)
        finally:
            os.unlink(fh.name)
        return Path(path)
