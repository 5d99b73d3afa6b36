"""scripts/run and scripts/_setup.sh: what gets installed and what gets started.

The scripts run for real (bash) in a copy of the repo's scripts beside a fake .venv whose
`python`, `sayit-node` and `sayit-desktop` record how they were called, so no package is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "{log}"
"""


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    for name in ("_setup.sh", "run", "bundle"):
        shutil.copy2(REPO / "scripts" / name, root / "scripts" / name)
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "sayit-node", "sayit-desktop"):
        path = bin_dir / name
        path.write_text(FAKE.format(log=root / "calls.log"))
        path.chmod(0o755)
    return root


def run(root: Path, *args: str, **env: str) -> list[str]:
    log = root / "calls.log"
    log.unlink(missing_ok=True)
    clean = {k: v for k, v in os.environ.items() if k != "SAYIT_DESKTOP"}
    proc = subprocess.run(["bash", str(root / "scripts" / "run"), *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [c.rstrip() for c in log.read_text().splitlines()] if log.exists() else []


def installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("python -m pip install -qq -e")]


def test_run_installs_the_headless_node_and_starts_it(root: Path) -> None:
    calls = run(root, "--port", "3100")
    assert installs(calls) == [f"python -m pip install -qq -e {root}[multilingual]"]
    assert calls[-1] == "sayit-node serve --port 3100"
    assert not any("desktop" in c or "PySide6" in c for c in calls)
    # Nothing changed: nothing is installed again.
    assert run(root) == ["sayit-node serve"]


def test_run_desktop_flag_and_env_start_the_tray(root: Path) -> None:
    run(root)
    calls = run(root, "--desktop")
    assert installs(calls) == [f"python -m pip install -qq -e {root}[desktop,multilingual]"]
    assert calls[-1] == "sayit-desktop"
    assert run(root, SAYIT_DESKTOP="1") == ["sayit-desktop"]
    # Going back to a headless node after the desktop install needs no install either.
    assert run(root, "--host", "127.0.0.1") == ["sayit-node serve --host 127.0.0.1"]
    stamp = (root / ".venv" / ".sayit-installed").read_text().split()
    assert stamp[1] == "desktop,multilingual"


def test_test_extras_after_run_install_once(root: Path) -> None:
    """scripts/test shares _setup.sh: its extras install on top, then a headless run reuses them."""
    run(root)
    log = root / "calls.log"
    log.unlink(missing_ok=True)
    script = f'source "{root}/scripts/_setup.sh"; sayit_setup "desktop,multilingual,test"'
    subprocess.run(["bash", "-c", script], check=True, timeout=60)
    calls = [c.rstrip() for c in log.read_text().splitlines()]
    assert installs(calls) == [f"python -m pip install -qq -e {root}[desktop,multilingual,test]"]
    assert run(root) == ["sayit-node serve"]
    # A changed pyproject.toml installs again.
    with (root / "pyproject.toml").open("a") as fh:
        fh.write("\n# changed\n")
    assert installs(run(root)) == [f"python -m pip install -qq -e {root}[multilingual]"]


def test_bundle_installs_the_bundle_extra_and_runs_the_build(root: Path) -> None:
    log = root / "calls.log"
    subprocess.run(["bash", str(root / "scripts" / "bundle"), "--distpath", "/x"], check=True, timeout=60,
                   env={k: v for k, v in os.environ.items() if k != "SAYIT_DESKTOP"})
    calls = [c.rstrip() for c in log.read_text().splitlines()]
    extras = "bundle,mlx" if os.uname().sysname == "Darwin" and os.uname().machine == "arm64" else "bundle"
    assert installs(calls) == [f"python -m pip install -qq -e {root}[{extras}]"]
    assert calls[-1] == "python installers/pyinstaller/build.py --distpath /x"


def test_pyproject_license_is_an_spdx_string() -> None:
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert data["project"]["license"] == "MIT"
    setuptools_req = next(r for r in data["build-system"]["requires"] if r.startswith("setuptools"))
    assert setuptools_req == "setuptools>=77"  # the first to read `license` as an SPDX expression
