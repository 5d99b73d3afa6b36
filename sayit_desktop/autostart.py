"""Start SayIt at login: one interface, three platforms.

- Windows: a value in the per-user Run key (HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run)
- macOS: a LaunchAgent plist in ~/Library/LaunchAgents
- Linux and other XDG desktops: a .desktop file in $XDG_CONFIG_HOME/autostart
"""

from __future__ import annotations

import os
import plistlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Protocol, Sequence

APP_ID = "org.sayit.desktop"
DISPLAY_NAME = "SayIt"


class Autostart(Protocol):
    def is_enabled(self) -> bool: ...
    def enable(self) -> None: ...
    def disable(self) -> None: ...


def launch_command() -> list[str]:
    """The command that starts this app at login."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    exe = Path(sys.executable)
    script = exe.with_name("sayit-desktop.exe" if os.name == "nt" else "sayit-desktop")
    if script.is_file():
        return [str(script)]
    if os.name == "nt" and exe.name.lower() == "python.exe" and exe.with_name("pythonw.exe").is_file():
        exe = exe.with_name("pythonw.exe")  # no console window at login
    return [str(exe), "-m", "sayit_desktop"]


# --- Linux / XDG ------------------------------------------------------------------------------

_EXEC_RESERVED = re.compile(r"""[\s"'\\><~|&;$*?#()`]""")


def desktop_exec(command: Sequence[str]) -> str:
    """A command line for a .desktop file's Exec key (Desktop Entry spec quoting rules)."""
    parts = []
    for arg in command:
        if arg == "" or _EXEC_RESERVED.search(arg):
            arg = '"' + re.sub(r'(["`$\\])', r"\\\1", arg) + '"'
        arg = arg.replace("%", "%%")
        parts.append(arg.replace("\\", "\\\\"))  # the string-value escape comes on top
    return " ".join(parts)


class XdgAutostart:
    def __init__(self, command: Sequence[str] | None = None, *, home: Path | str | None = None,
                 environ: Mapping[str, str] | None = None, icon: Path | str | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.command = list(command or launch_command())
        base = environ.get("XDG_CONFIG_HOME")
        if base and Path(base).is_absolute():
            config_home = Path(base)
        else:
            config_home = Path(home if home is not None else Path.home()) / ".config"
        self.path = config_home / "autostart" / f"{APP_ID}.desktop"
        self.icon = str(icon) if icon else None

    def is_enabled(self) -> bool:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:
            return False
        entries = dict(line.split("=", 1) for line in text.splitlines()
                       if "=" in line and not line.startswith("#"))
        if entries.get("Hidden", "").strip().lower() == "true":
            return False
        return entries.get("X-GNOME-Autostart-enabled", "true").strip().lower() != "false"

    def enable(self) -> None:
        lines = [
            "[Desktop Entry]",
            "Type=Application",
            f"Name={DISPLAY_NAME}",
            "Comment=Self-hosted speech-to-text: starts the SayIt tray and its node",
            f"Exec={desktop_exec(self.command)}",
            "Terminal=false",
            "Categories=AudioVideo;Audio;Utility;",
            "X-GNOME-Autostart-enabled=true",
        ]
        if self.icon:
            lines.insert(4, f"Icon={self.icon}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def disable(self) -> None:
        self.path.unlink(missing_ok=True)


# --- macOS ------------------------------------------------------------------------------------

class LaunchAgent:
    def __init__(self, command: Sequence[str] | None = None, *, home: Path | str | None = None) -> None:
        self.command = list(command or launch_command())
        self.path = Path(home if home is not None else Path.home()) / "Library" / "LaunchAgents" / f"{APP_ID}.plist"

    def is_enabled(self) -> bool:
        try:
            with self.path.open("rb") as fh:
                data = plistlib.load(fh)
        except (OSError, plistlib.InvalidFileException, ValueError):
            return False
        return bool(data.get("RunAtLoad")) and not data.get("Disabled", False)

    def enable(self) -> None:
        data = {
            "Label": APP_ID,
            "ProgramArguments": self.command,
            "RunAtLoad": True,
            "KeepAlive": False,  # Quit means quit
            "ProcessType": "Interactive",
            "LimitLoadToSessionType": "Aqua",
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            plistlib.dump(data, fh)
        os.replace(tmp, self.path)

    def disable(self) -> None:
        self.path.unlink(missing_ok=True)


# --- Windows ----------------------------------------------------------------------------------

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


class Registry(Protocol):
    """The few HKEY_CURRENT_USER operations the Run key needs (faked in tests)."""

    def get_value(self, key: str, name: str) -> str | None: ...
    def set_value(self, key: str, name: str, value: str) -> None: ...
    def delete_value(self, key: str, name: str) -> None: ...


class WinregRegistry:
    """HKEY_CURRENT_USER through the standard library's winreg."""

    def __init__(self) -> None:
        import winreg  # only on Windows

        self._winreg = winreg

    def get_value(self, key: str, name: str) -> str | None:
        w = self._winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, key, 0, w.KEY_READ) as handle:
                value, _ = w.QueryValueEx(handle, name)
                return str(value)
        except FileNotFoundError:
            return None

    def set_value(self, key: str, name: str, value: str) -> None:
        w = self._winreg
        with w.CreateKeyEx(w.HKEY_CURRENT_USER, key, 0, w.KEY_SET_VALUE) as handle:
            w.SetValueEx(handle, name, 0, w.REG_SZ, value)

    def delete_value(self, key: str, name: str) -> None:
        w = self._winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, key, 0, w.KEY_SET_VALUE) as handle:
                w.DeleteValue(handle, name)
        except FileNotFoundError:
            pass


class WindowsRunKey:
    def __init__(self, command: Sequence[str] | None = None, *, registry: Registry | None = None) -> None:
        self.command = list(command or launch_command())
        self.registry = registry if registry is not None else WinregRegistry()

    def is_enabled(self) -> bool:
        return bool(self.registry.get_value(RUN_KEY, DISPLAY_NAME))

    def enable(self) -> None:
        self.registry.set_value(RUN_KEY, DISPLAY_NAME, subprocess.list2cmdline(self.command))

    def disable(self) -> None:
        self.registry.delete_value(RUN_KEY, DISPLAY_NAME)


def for_platform(platform: str | None = None, **kwargs) -> Autostart:
    platform = platform or sys.platform
    if platform.startswith("win"):
        return WindowsRunKey(kwargs.get("command"), registry=kwargs.get("registry"))
    if platform == "darwin":
        return LaunchAgent(kwargs.get("command"), home=kwargs.get("home"))
    return XdgAutostart(kwargs.get("command"), home=kwargs.get("home"),
                        environ=kwargs.get("environ"), icon=kwargs.get("icon"))
