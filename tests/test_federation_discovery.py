"""Real nodes find each other over mDNS and join a cluster, inside `unshare -n` (loopback only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                       reason="needs root and unshare for a private network namespace"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def test_discovery_autojoin_and_peer_timing(tmp_path):
    result = subprocess.run(
        ["unshare", "-n", sys.executable, str(ROOT / "tests" / "netns_helpers" / "federation_driver.py"),
         str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    print(out)
    assert out["host_mode"] == "federated" and out["joiner_mode"] == "federated", "automatic join"
    assert out["host_sees_joiner"] is not None
    assert out["new_peer_seen_after"] is not None and out["new_peer_seen_after"] < 5
    assert out["dead_peer_gone_after"] is not None and out["dead_peer_gone_after"] < 10
    assert out["stranger_mode"] == "standalone" and out["host_lists_stranger"] is False
    assert out["stranger_warns"] and "check the secret" in out["stranger_warns"][0]
    assert out["host_warns"] and "127.0.0.1" in out["host_warns"][0]
    assert [r["kind"] for r in out["host_rejected"]] == ["foreign"]
    assert out["job_on_host"] == "completed"
