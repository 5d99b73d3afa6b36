"""A hostile host on the LAN copies a real node's advert, points it at itself and relays the real
node's HTTP and Redis ports, recording every byte. A node that starts beside it must join the
real cluster, and the impostor must get no byte of the Redis password.

Three network namespaces (real host, joiner, impostor) plugged into a bridge that lives in a
fourth; nothing touches the machine's own interfaces. Needs root, ip, redis-server, espeak-ng.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.netns_helpers.lan import bridged_lan

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                       reason="needs root and ip for network namespaces"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.timeout(300),
]

ADDR = {"host": "10.201.0.1", "joiner": "10.201.0.2", "evil": "10.201.0.3"}


@pytest.fixture
def lan3():
    with bridged_lan("sayit-i", ADDR) as names:
        yield names


def test_impostor_gets_no_credential_and_cannot_stop_a_joiner(lan3, tmp_path):
    result = subprocess.run(
        ["ip", "netns", "exec", lan3["joiner"], sys.executable,
         str(ROOT / "tests" / "netns_helpers" / "impostor_driver.py"), str(tmp_path),
         lan3["host"], lan3["evil"], ADDR["host"], ADDR["joiner"], ADDR["evil"]],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(out, indent=1))
    # the joiner started, joined the REAL cluster and works in it
    assert out["joiner_mode"] == "federated"
    assert "host" in out["joiner_sees"] and "joiner" in out["host_sees"]
    assert out["job_on_host"] == "completed"
    # the impostor's rewritten adverts were ignored, reported, and logged once
    rejected = [r for r in out["joiner_rejected"] if r["address"] == ADDR["evil"]]
    assert rejected and {r["kind"] for r in rejected} == {"foreign"}
    assert any(f"another SayIt cluster at {ADDR['evil']}" in w for w in out["joiner_warnings"])
    assert out["joiner_log_foreign_lines"] == 1
    # not one byte of the Redis password (nor the secret) reached the impostor...
    assert out["password_bytes_at_evil"] == 0 and out["secret_bytes_at_evil"] == 0
    # ...though its recorders do catch a password sent to it in clear (control): the relay, and
    # the raw socket that sees every port (so the zero above covers ports it does not listen on)
    assert out["control_password_bytes_at_evil"] >= 1
    assert out["control_password_seen_by_raw_socket"] >= 1
