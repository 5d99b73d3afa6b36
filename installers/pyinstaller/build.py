#!/usr/bin/env python3
"""Build the one-folder SayIt bundle for this machine's OS with PyInstaller.

    python installers/pyinstaller/build.py [--distpath DIR] [--workpath DIR]

Writes DIR/SayIt/ (default dist/SayIt/) with sayit-node and sayit-desktop (.exe on Windows) and, on
macOS, DIR/SayIt.app. Prints the bundle's size. ./scripts/bundle installs what it needs and runs this.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "installers" / "pyinstaller" / "sayit.spec"


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distpath", type=Path, default=ROOT / "dist")
    parser.add_argument("--workpath", type=Path, default=ROOT / "build" / "pyinstaller")
    parser.add_argument("--clean", action="store_true", help="ignore PyInstaller's cache")
    args = parser.parse_args(argv)
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(args.distpath), "--workpath", str(args.workpath), str(SPEC)]
    if args.clean:
        cmd.insert(3, "--clean")
    started = time.monotonic()
    # The bundle must not depend on where it was built: no stray PYTHONPATH into the analysis
    # beyond the repository itself.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, cwd=ROOT, env=env)
    if result.returncode != 0:
        return result.returncode
    bundle = args.distpath / "SayIt"
    exe = ".exe" if os.name == "nt" else ""
    missing = [name for name in (f"sayit-node{exe}", f"sayit-desktop{exe}") if not (bundle / name).is_file()]
    if missing:
        print(f"build.py: {', '.join(missing)} missing in {bundle}", file=sys.stderr)
        return 1
    print(f"built {bundle} in {time.monotonic() - started:.0f} s: {folder_size(bundle) / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
