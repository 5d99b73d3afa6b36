"""Guard against a reference-count bug of PySide6 6.12 on Python 3.11.

PySide6/shiboken6 6.12.0 (the cp310-abi3 wheel) returns None, True and False from C++ calls
without taking a reference: every `setText()`, `setObjectName()`, `postEvent()` or
`Signal.emit()` drops one reference to a singleton. On Python 3.12+ those singletons are
immortal and nothing happens; on 3.11 the app aborts after a few thousand calls
("Fatal Python error: none_dealloc" / "bool_dealloc") — minutes for a tray that updates every
second. PySide6 6.11.3 does not have the bug.

The guard gives those singletons the huge reference count that Python 3.12 gives them
(they are never freed in a running interpreter anyway). It is applied only to the affected
combination; pinning PySide6 below 6.12 (or running on Python 3.12+) makes it a no-op.
"""

from __future__ import annotations

import ctypes
import sys
from importlib import metadata

BOOST = 1 << 40


def _affected() -> bool:
    if sys.version_info >= (3, 12) or hasattr(sys, "gettotalrefcount"):  # immortal / debug build
        return False
    try:
        version = metadata.version("shiboken6")
    except metadata.PackageNotFoundError:
        return False
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 12)


def apply() -> bool:
    """Make None, True, False, Ellipsis and NotImplemented effectively immortal; True if done."""
    if not _affected():
        return False
    for obj in (None, True, False, Ellipsis, NotImplemented):
        refcnt = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt is PyObject's first field
        if refcnt.value < BOOST:
            refcnt.value += BOOST
    return True


APPLIED = apply()
