"""SayIt desktop: a tray app that supervises a local `sayit-node serve` and shows its load.

The tray talks to its node only through the node's HTTP API; the node also runs without it.
"""

__version__ = "0.1.0"

from . import _refcount_guard  # noqa: E402,F401  (PySide6 6.12 on Python 3.11: see there)
