"""`sayit-desktop` in the PyInstaller bundle: the tray, which runs `sayit-node` from beside it."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from sayit_desktop.app import main

    sys.exit(main())
