"""How the tray starts its node on each platform, and the Windows Job Object that ties the node's
life to the tray's.

POSIX: the node runs in its own session (a Ctrl+C meant for the tray reaches it only through the
tray) and watches SAYIT_PARENT_PID; the hosted redis-server dies with it by PDEATHSIG.

Windows has no POSIX signals, `preexec_fn` or sessions. The node starts with CREATE_NO_WINDOW
(no console window flashes up) and CREATE_NEW_PROCESS_GROUP, and is put into a Job Object
created with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: the tray holds the only handle, so when the tray
exits for any reason (Quit, a crash, End task) Windows closes the handle and kills the node and
anything it started. The graceful path stays HTTP (POST /api/shutdown) first; TerminateProcess
only after the stop timeout. The parent watchdog (SAYIT_PARENT_PID) remains as a second line.

kernel32 is injected so that the calls and the structure passed can be checked on any OS.
"""

from __future__ import annotations

import ctypes
import logging
import subprocess
import sys
from typing import Any

log = logging.getLogger(__name__)

# Process creation flags (winbase.h); subprocess has them only on Windows.
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000

# Job objects (winnt.h).
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION = 0x00000400
JobObjectExtendedLimitInformation = 9
PROCESS_TERMINATE = 0x0001
PROCESS_SET_QUOTA = 0x0100


def is_windows(platform: str | None = None) -> bool:
    return (platform or sys.platform).startswith("win")


def popen_options(platform: str | None = None) -> dict[str, Any]:
    """Keyword arguments for subprocess.Popen that start the node detached from the tray's
    console and signals, right for the platform. Never `preexec_fn` (unsafe with threads, and
    absent on Windows)."""
    if is_windows(platform):
        return {"creationflags": CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


class IO_COUNTERS(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION),
        ("IoInfo", IO_COUNTERS),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


def _kernel32():
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = ctypes.c_void_p
    kernel32.CreateJobObjectW.restype = handle
    kernel32.CreateJobObjectW.argtypes = (ctypes.c_void_p, ctypes.c_wchar_p)
    kernel32.SetInformationJobObject.restype = ctypes.c_int
    kernel32.SetInformationJobObject.argtypes = (handle, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
    kernel32.OpenProcess.restype = handle
    kernel32.OpenProcess.argtypes = (ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32)
    kernel32.AssignProcessToJobObject.restype = ctypes.c_int
    kernel32.AssignProcessToJobObject.argtypes = (handle, handle)
    kernel32.CloseHandle.restype = ctypes.c_int
    kernel32.CloseHandle.argtypes = (handle,)
    return kernel32


class JobObject:
    """A kill-on-close Job Object holding the node. `close()` (or the tray's exit) kills what is
    still inside."""

    def __init__(self, kernel32=None) -> None:
        self.k = kernel32 if kernel32 is not None else _kernel32()
        self.handle = self.k.CreateJobObjectW(None, None)
        if not self.handle:
            raise OSError(f"CreateJobObjectW failed ({self._error()})")
        info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
        info.BasicLimitInformation.LimitFlags = (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
                                                 | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION)
        if not self.k.SetInformationJobObject(self.handle, JobObjectExtendedLimitInformation,
                                              ctypes.byref(info), ctypes.sizeof(info)):
            error = self._error()
            self.close()
            raise OSError(f"SetInformationJobObject failed ({error})")

    def _error(self) -> int:
        get = getattr(ctypes, "get_last_error", None)
        return get() if get else 0

    def assign(self, pid: int) -> None:
        process = self.k.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
        if not process:
            raise OSError(f"OpenProcess({pid}) failed ({self._error()})")
        try:
            if not self.k.AssignProcessToJobObject(self.handle, process):
                raise OSError(f"AssignProcessToJobObject failed ({self._error()})")
        finally:
            self.k.CloseHandle(process)

    def close(self) -> None:
        if self.handle:
            self.k.CloseHandle(self.handle)
            self.handle = None


def contain(proc: subprocess.Popen, *, platform: str | None = None, kernel32=None) -> JobObject | None:
    """On Windows, put `proc` into a new kill-on-close Job Object (returned; keep it open as long
    as the node should live). Elsewhere, or if Windows refuses, None (the watchdog still works)."""
    if not is_windows(platform):
        return None
    try:
        job = JobObject(kernel32)
        try:
            job.assign(proc.pid)
        except OSError:
            job.close()
            raise
        return job
    except OSError as exc:
        log.warning("cannot tie the node to the tray with a Job Object: %s", exc)
        return None
