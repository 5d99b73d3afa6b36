"""Start at login on each platform, against a temporary home and a fake registry."""

from __future__ import annotations

import plistlib
import shlex

from sayit_desktop.autostart import (
    RUN_KEY,
    LaunchAgent,
    WindowsRunKey,
    XdgAutostart,
    desktop_exec,
    for_platform,
    launch_command,
)

COMMAND = ["/opt/Say It/bin/python", "-m", "sayit_desktop"]


def test_launch_command_runs_this_app():
    cmd = launch_command()
    assert cmd[0]
    assert cmd[-1] in ("sayit_desktop",) or cmd[0].endswith(("sayit-desktop", "sayit-desktop.exe"))


def test_xdg_enable_writes_a_desktop_file_and_disable_removes_it(tmp_path):
    auto = XdgAutostart(COMMAND, home=tmp_path, environ={}, icon="/x/icon.png")
    assert auto.path == tmp_path / ".config" / "autostart" / "org.sayit.desktop.desktop"
    assert not auto.is_enabled()
    auto.enable()
    assert auto.is_enabled()
    lines = auto.path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "[Desktop Entry]"
    entries = dict(line.split("=", 1) for line in lines[1:])
    assert entries["Type"] == "Application"
    assert entries["Name"] == "SayIt"
    assert entries["Icon"] == "/x/icon.png"
    # The spec's quoting: the argument with a space is quoted; splitting gives the command back.
    assert entries["Exec"] == '"/opt/Say It/bin/python" -m sayit_desktop'
    assert shlex.split(entries["Exec"]) == COMMAND
    auto.disable()
    assert not auto.path.exists()
    assert not auto.is_enabled()
    auto.disable()  # idempotent


def test_xdg_honours_xdg_config_home_and_hidden(tmp_path):
    auto = XdgAutostart(COMMAND, home=tmp_path / "home", environ={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    auto.enable()
    assert (tmp_path / "cfg" / "autostart" / "org.sayit.desktop.desktop").is_file()
    assert not (tmp_path / "home").exists()
    auto.path.write_text(auto.path.read_text() + "Hidden=true\n")
    assert not auto.is_enabled()  # a desktop environment's "off" switch is respected


def test_desktop_exec_escapes_reserved_characters():
    assert desktop_exec(["/usr/bin/app", "--x"]) == "/usr/bin/app --x"
    assert desktop_exec(["/a b/c"]) == '"/a b/c"'
    assert desktop_exec(['say"it']) == '"say\\\\"it"'
    assert desktop_exec(["100%"]) == "100%%"
    assert desktop_exec(["c:\\dir"]) == '"c:\\\\\\\\dir"'
    assert desktop_exec(["$HOME"]) == '"\\\\$HOME"'


def test_launch_agent_plist(tmp_path):
    auto = LaunchAgent(COMMAND, home=tmp_path)
    assert auto.path == tmp_path / "Library" / "LaunchAgents" / "org.sayit.desktop.plist"
    assert not auto.is_enabled()
    auto.enable()
    assert auto.is_enabled()
    with auto.path.open("rb") as fh:
        data = plistlib.load(fh)
    assert data["Label"] == "org.sayit.desktop"
    assert data["ProgramArguments"] == COMMAND
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] is False
    auto.disable()
    assert not auto.path.exists() and not auto.is_enabled()


def test_launch_agent_broken_plist_counts_as_off(tmp_path):
    auto = LaunchAgent(COMMAND, home=tmp_path)
    auto.path.parent.mkdir(parents=True)
    auto.path.write_text("not a plist")
    assert not auto.is_enabled()
    auto.enable()
    assert auto.is_enabled()


class FakeRegistry:
    def __init__(self):
        self.keys: dict[str, dict[str, str]] = {}

    def get_value(self, key, name):
        return self.keys.get(key, {}).get(name)

    def set_value(self, key, name, value):
        self.keys.setdefault(key, {})[name] = value

    def delete_value(self, key, name):
        self.keys.get(key, {}).pop(name, None)


def test_windows_run_key_with_a_fake_registry():
    reg = FakeRegistry()
    reg.set_value(RUN_KEY, "OtherApp", "other.exe")
    auto = WindowsRunKey([r"C:\Program Files\SayIt\sayit-desktop.exe", "--no-start"], registry=reg)
    assert not auto.is_enabled()
    auto.enable()
    assert auto.is_enabled()
    assert reg.keys[RUN_KEY]["SayIt"] == r'"C:\Program Files\SayIt\sayit-desktop.exe" --no-start'
    auto.disable()
    assert "SayIt" not in reg.keys[RUN_KEY]
    assert reg.keys[RUN_KEY]["OtherApp"] == "other.exe"  # others' entries untouched
    assert not auto.is_enabled()
    auto.disable()


def test_for_platform_picks_the_implementation(tmp_path):
    assert isinstance(for_platform("linux", home=tmp_path, environ={}), XdgAutostart)
    assert isinstance(for_platform("darwin", home=tmp_path), LaunchAgent)
    win = for_platform("win32", registry=FakeRegistry())
    assert isinstance(win, WindowsRunKey)
