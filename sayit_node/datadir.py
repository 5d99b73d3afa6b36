"""The node's private directories: owner-only modes, and one node per data directory.

Recordings, transcripts, the node id and the cluster's Redis data live in the data directory,
so it and what is in it are created 0700/0600 (the log directory too: logs name files and
peers). A second node started on the same data directory would share the first one's node id
(its leases, its hand-back at start and `/api/nodes` would mix the two up), so the directory is
locked for the node's lifetime and the second one stops at once with a message that says so.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

__all__ = ["DataDirInUse", "DataDirLock", "private_dir", "private_file", "PRIVATE_UMASK"]

PRIVATE_UMASK = 0o077
LOCK_NAME = "node.lock"


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) owner-only; tighten it if it already exists and is ours."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    _tighten(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 if missing; tighten it if it exists and is ours."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    _tighten(path, 0o600)
    return path


def _tighten(path: Path, mode: int) -> None:
    if os.name != "posix":
        return  # Windows: the per-user profile directories are already private
    try:
        st = path.stat()
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            path.chmod(stat.S_IMODE(st.st_mode) & ~0o077 | (mode & 0o700))
    except OSError:
        pass


class DataDirInUse(RuntimeError):
    pass


class DataDirLock:
    """An exclusive lock on the data directory (fcntl.flock on POSIX, msvcrt on Windows).

    The kernel drops it when the process dies, even by SIGKILL, so a crashed node never leaves
    a stale lock behind. The lock file holds the owner's pid, for the message.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock(fd)
        except OSError:
            owner = ""
            with contextlib.suppress(OSError, ValueError):
                owner = os.pread(fd, 32, 0).decode().strip() if hasattr(os, "pread") else ""
            os.close(fd)
            who = f"(pid {owner}) " if owner else ""
            raise DataDirInUse(
                f"another SayIt node {who}is using the data directory {self.path.parent}; stop it first, "
                "or give this node its own directory with SAYIT_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
