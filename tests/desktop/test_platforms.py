"""Platform branches checked by what they produce: the Windows process flags and Job Object calls
(through a fake kernel32 that records them), the frozen app's node command, the tray's Redis
hosting choice on Windows, redis-server from Homebrew on macOS, the macOS Info.plist and
LaunchAgent, the Inno Setup script's firewall rule and login entry, the icon containers."""

from __future__ import annotations

import ctypes
import plistlib
import re
import signal
import struct
import sys
import time
from pathlib import Path

import psutil
import pytest

from sayit_desktop import autostart, winproc
from sayit_desktop.supervisor import State, default_command
from sayit_node.federation import hosted_redis

from .helpers import REPO

ISS = REPO / "installers" / "windows" / "sayit.iss"


# --- Windows: process flags and the Job Object -----------------------------------------------

def test_popen_options_per_platform():
    win = winproc.popen_options("win32")
    assert win == {"creationflags": 0x08000000 | 0x00000200}  # CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP
    assert "preexec_fn" not in win and "start_new_session" not in win
    if sys.platform.startswith("win"):
        import subprocess

        assert win["creationflags"] == subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
    assert winproc.popen_options("linux") == {"start_new_session": True}
    assert winproc.popen_options("darwin") == {"start_new_session": True}


class FakeKernel32:
    """Records the Win32 calls, copying the structure passed to SetInformationJobObject."""

    def __init__(self, fail: str | None = None):
        self.calls: list[tuple] = []
        self.fail = fail
        self.limits: winproc.JOBOBJECT_EXTENDED_LIMIT_INFORMATION | None = None
        self.open_handles: set[int] = set()
        self._next = 100

    def _handle(self) -> int:
        self._next += 4
        self.open_handles.add(self._next)
        return self._next

    def CreateJobObjectW(self, attributes, name):
        self.calls.append(("CreateJobObjectW", attributes, name))
        return self._handle()

    def SetInformationJobObject(self, job, info_class, info, size):
        self.calls.append(("SetInformationJobObject", job, info_class, size))
        struct_ = info._obj  # ctypes.byref(...) keeps the structure in _obj
        self.limits = winproc.JOBOBJECT_EXTENDED_LIMIT_INFORMATION.from_buffer_copy(bytes(struct_))
        return 0 if self.fail == "set" else 1

    def OpenProcess(self, access, inherit, pid):
        self.calls.append(("OpenProcess", access, inherit, pid))
        return self._handle()

    def AssignProcessToJobObject(self, job, process):
        self.calls.append(("AssignProcessToJobObject", job, process))
        return 0 if self.fail == "assign" else 1

    def CloseHandle(self, handle):
        self.calls.append(("CloseHandle", handle))
        self.open_handles.discard(handle)
        return 1

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class FakeProc:
    pid = 4242


def test_job_object_is_kill_on_close_and_holds_the_node():
    k = FakeKernel32()
    job = winproc.contain(FakeProc(), platform="win32", kernel32=k)
    assert job is not None
    assert k.names() == ["CreateJobObjectW", "SetInformationJobObject", "OpenProcess",
                         "AssignProcessToJobObject", "CloseHandle"]
    _, job_handle, info_class, size = k.calls[1]
    assert job_handle == job.handle
    assert info_class == 9  # JobObjectExtendedLimitInformation
    assert size == ctypes.sizeof(winproc.JOBOBJECT_EXTENDED_LIMIT_INFORMATION)
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert size == 144  # the x64 layout Windows expects
    assert k.limits.BasicLimitInformation.LimitFlags & 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    _, access, inherit, pid = k.calls[2]
    assert pid == 4242 and not inherit
    assert access & 0x0100 and access & 0x0001  # PROCESS_SET_QUOTA | PROCESS_TERMINATE
    process_handle = k.calls[3][2]
    assert k.calls[3][1] == job.handle
    assert k.calls[4] == ("CloseHandle", process_handle)  # the process handle is not leaked
    assert k.open_handles == {job.handle}  # only the job stays open, as long as the tray lives
    job.close()
    assert k.open_handles == set()


@pytest.mark.parametrize("fail", ["set", "assign"])
def test_job_object_failure_is_logged_not_fatal(fail):
    k = FakeKernel32(fail=fail)
    assert winproc.contain(FakeProc(), platform="win32", kernel32=k) is None
    assert k.open_handles == set()


def test_no_job_object_off_windows():
    k = FakeKernel32()
    assert winproc.contain(FakeProc(), platform="linux", kernel32=k) is None
    assert k.calls == []


def test_windows_supervisor_uses_flags_job_object_and_no_signals(qtbot, node_env, supervisors, tmp_path):
    """The Windows branch of the supervisor, run here: the child is started through a Popen
    that records the keyword arguments (and drops creationflags, which only Windows accepts),
    it lands in the (fake) job, stopping sends no POSIX signal, and the job is closed after."""
    import subprocess

    seen: list[dict] = []

    def popen(cmd, **kwargs):
        seen.append(dict(kwargs))
        kwargs.pop("creationflags", None)
        return subprocess.Popen(cmd, **kwargs)

    marker = tmp_path / "got-sigterm"
    script = (f"import signal, time, pathlib\n"
              f"signal.signal(signal.SIGTERM, lambda *a: pathlib.Path({str(marker)!r}).touch())\n"
              f"print('up', flush=True)\ntime.sleep(120)\n")
    k = FakeKernel32()
    sup = supervisors(command=[sys.executable, "-c", script], stop_timeout=1.0, platform="win32",
                      popen=popen, kernel32=k)
    sup.start()
    qtbot.waitUntil(lambda: sup.pid is not None, timeout=5000)
    pid = sup.pid
    assert seen[0]["creationflags"] == 0x08000000 | 0x00000200
    assert "start_new_session" not in seen[0] and "preexec_fn" not in seen[0]
    assert ("OpenProcess", 0x0101, False, pid) in k.calls
    assert sup.job is not None and sup.job.handle in k.open_handles
    qtbot.wait(300)
    sup.stop()
    qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=10000)
    assert not marker.exists()  # no SIGTERM on the Windows path: HTTP first, then kill at the deadline
    assert sup.last_exit_code == -signal.SIGKILL
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert sup.job is None and k.open_handles == set()


def test_posix_supervisor_starts_the_node_in_its_own_session(qtbot, node_env, supervisors):
    script = "import time; print('up', flush=True); time.sleep(120)"
    sup = supervisors(command=[sys.executable, "-c", script], stop_timeout=5.0)
    sup.start()
    qtbot.waitUntil(lambda: sup.pid is not None, timeout=5000)
    import os

    assert os.getsid(sup.pid) == sup.pid != os.getsid(0)
    assert sup.job is None


# --- the frozen app runs its node from the bundle ----------------------------------------------

def test_frozen_app_runs_the_sibling_node_program():
    assert default_command(frozen=True, executable=r"C:\Users\a\AppData\Local\Programs\SayIt\sayit-desktop.exe",
                           platform="win32")[0].endswith("sayit-node.exe")
    cmd = default_command(frozen=True, executable="/opt/SayIt/sayit-desktop", platform="linux")
    assert cmd == ["/opt/SayIt/sayit-node", "serve"]
    mac = default_command(frozen=True, executable="/Applications/SayIt.app/Contents/MacOS/sayit-desktop",
                          platform="darwin")
    assert mac == ["/Applications/SayIt.app/Contents/MacOS/sayit-node", "serve"]
    assert "-m" not in cmd and "-m" not in mac
    assert default_command(frozen=False, executable="/usr/bin/python3") == [
        "/usr/bin/python3", "-m", "sayit_node", "serve"]


def test_frozen_login_item_starts_the_bundle(monkeypatch, tmp_path):
    exe = "/Applications/SayIt.app/Contents/MacOS/sayit-desktop"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", exe)
    agent = autostart.LaunchAgent(home=tmp_path)
    agent.enable()
    data = plistlib.loads(agent.path.read_bytes())
    assert data["ProgramArguments"] == [exe]
    assert data["RunAtLoad"] is True and data["LimitLoadToSessionType"] == "Aqua"
    xdg = autostart.XdgAutostart(home=tmp_path, environ={})
    xdg.enable()
    assert f"Exec={exe}\n" in xdg.path.read_text()


# --- Redis hosting: none on Windows, Homebrew on macOS -------------------------------------------

def test_settings_dialog_disables_host_it_here_on_windows(qtbot, node_env, tmp_path):
    from sayit_desktop.settings_dialog import SettingsDialog
    from sayit_desktop.settings_store import ConfigFile

    node_env.config.write_text(f"port = {node_env.port}\nhost_redis = true\n")
    dialog = SettingsDialog(ConfigFile(), platform="win32")
    qtbot.addWidget(dialog)
    dialog.load()
    assert not dialog.redis_host.isEnabled()
    assert not dialog.redis_host.isChecked() and dialog.redis_auto.isChecked()
    note = dialog.redis_host_note.text()
    assert not dialog.redis_host_note.isHidden()
    assert "no native redis-server" in note and "Mac mini" in note and "Redis URL" in note
    assert note == dialog.redis_host.toolTip()
    assert dialog.save()
    assert "host_redis = false" in node_env.config.read_text()

    linux = SettingsDialog(ConfigFile(), platform="linux")
    qtbot.addWidget(linux)
    linux.load()
    assert linux.redis_host.isEnabled() and linux.redis_host_note.isHidden()


def test_redis_server_found_in_homebrew_on_macos():
    brew = "/opt/homebrew/bin/redis-server"
    found = hosted_redis.find_redis_server(platform="darwin", which=lambda name: None,
                                           is_executable=lambda p: p == brew)
    assert found == brew
    intel = "/usr/local/bin/redis-server"
    assert hosted_redis.find_redis_server(platform="darwin", which=lambda name: None,
                                          is_executable=lambda p: p == intel) == intel
    assert hosted_redis.find_redis_server(platform="linux", which=lambda name: None,
                                          is_executable=lambda p: True) is None
    assert hosted_redis.find_redis_server(platform="darwin", which=lambda name: "/x/redis-server",
                                          is_executable=lambda p: False) == "/x/redis-server"
    assert hosted_redis.hosting_problem("win32") == hosted_redis.WINDOWS_NO_REDIS
    assert hosted_redis.hosting_problem("darwin") is None


# --- macOS: Info.plist, entitlements ----------------------------------------------------------------

def test_info_plist_is_menu_bar_only():
    info = plistlib.loads((REPO / "installers" / "macos" / "Info.plist").read_bytes())
    assert info["LSUIElement"] is True  # no Dock icon
    assert info["CFBundleIdentifier"] == autostart.APP_ID
    assert info["CFBundleExecutable"] == "sayit-desktop"
    assert info["CFBundleIconFile"] == "sayit.icns"
    assert "_sayit._tcp" in info["NSBonjourServices"] and info["NSLocalNetworkUsageDescription"]
    entitlements = plistlib.loads((REPO / "installers" / "macos" / "entitlements.plist").read_bytes())
    assert entitlements["com.apple.security.cs.disable-library-validation"] is True
    assert entitlements["com.apple.security.network.server"] is True


# --- Windows installer -------------------------------------------------------------------------------

def iss_sections() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in ISS.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
            sections[current] = []
        elif current and stripped and not stripped.startswith(";"):
            sections[current].append(stripped)
    return sections


def iss_defines() -> dict[str, str]:
    return dict(re.findall(r'^#define (\w+) "([^"]*)"', ISS.read_text(), re.M))


def expand(text: str) -> str:
    for name, value in iss_defines().items():
        text = text.replace("{#" + name + "}", value)
    return text


def test_inno_setup_is_per_user_with_start_menu_and_login_task():
    s = iss_sections()
    setup = dict(line.split("=", 1) for line in s["Setup"])
    assert setup["PrivilegesRequired"] == "lowest"
    assert setup["DefaultDirName"].startswith("{localappdata}")
    assert any(line.startswith('Name: "{group}\\{#AppName}"') and "sayit-desktop.exe" in line for line in s["Icons"])
    assert any('Name: "startatlogin"' in line for line in s["Tasks"])
    run_value = [expand(line) for line in s["Registry"] if "Tasks: startatlogin" in line]
    assert len(run_value) == 1
    # The same Run value the tray's menu writes, so either one's choice is the other's.
    assert f'Subkey: "{autostart.RUN_KEY}"' in run_value[0]
    assert f'ValueName: "{autostart.DISPLAY_NAME}"' in run_value[0]
    assert "uninsdeletevalue" in run_value[0]
    code = expand("\n".join(s["Code"]))
    assert "usPostUninstall" in code
    assert f"RegDeleteValue(HKEY_CURRENT_USER, '{autostart.RUN_KEY}', '{autostart.DISPLAY_NAME}')" in code


def test_inno_setup_firewall_rule_is_private_only_and_removed_on_uninstall():
    s = iss_sections()
    add = [expand(line) for line in s["Run"] if "netsh.exe" in line]
    assert len(add) == 1
    rule = add[0]
    assert "advfirewall firewall add rule" in rule
    assert "profile=private" in rule
    assert not re.search(r"profile=\S*(public|any|domain)", rule, re.I)
    assert "dir=in" in rule and "protocol=TCP" in rule and "localport=3000" in rule
    assert 'program=""{app}\\sayit-node.exe""' in rule
    assert "Verb: runas" in rule and "Tasks: firewall" in rule  # only this step asks for rights
    name = re.search(r'name=""([^"]+)""', rule).group(1)
    remove = [expand(line) for line in s["UninstallRun"] if "netsh.exe" in line]
    assert len(remove) == 1 and f'delete rule name=""{name}""' in remove[0]


# --- icons for the executables ----------------------------------------------------------------

def test_app_icon_containers_hold_pngs():
    ico = (REPO / "resources" / "icons" / "sayit.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind) == (0, 1) and count >= 5
    sizes = []
    for i in range(count):
        w, h, _, _, planes, bpp, size, offset = struct.unpack("<BBBBHHII", ico[6 + 16 * i: 22 + 16 * i])
        assert ico[offset:offset + 8] == b"\x89PNG\r\n\x1a\n" and offset + size <= len(ico)
        sizes.append(w or 256)
    assert 16 in sizes and 256 in sizes
    icns = (REPO / "resources" / "icons" / "sayit.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    pos, types = 8, []
    while pos < len(icns):
        kind, length = icns[pos:pos + 4], struct.unpack(">I", icns[pos + 4:pos + 8])[0]
        assert icns[pos + 8:pos + 16] == b"\x89PNG\r\n\x1a\n"
        types.append(kind)
        pos += length
    assert pos == len(icns) and b"ic07" in types and b"ic09" in types
