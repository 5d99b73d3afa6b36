"""SayIt desktop: a tray app that supervises a local `sayit-node serve` and shows its load.

The tray talks to its node only through the node's HTTP API; the node also runs without it.
"""

__version__ = "0.1.0"
