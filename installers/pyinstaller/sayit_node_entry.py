"""`sayit-node` in the PyInstaller bundle (the same CLI as the installed package)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from sayit_node.cli import main

    sys.exit(main())
