"""Runs inside the joiner's namespace of tests/test_impostor.py; prints one JSON object.

    impostor_driver.py HOME NS_HOST NS_EVIL HOST_ADDR JOINER_ADDR EVIL_ADDR

A real node hosting the cluster's Redis runs in NS_HOST, the hostile advertiser
(impostor.py) in NS_EVIL, and a joining node here. Everything the impostor receives is
recorded; the test asserts on what this driver observed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from sayit_node.federation.cluster_keys import ClusterKeys  # noqa: E402
from shared import job_completes_on  # noqa: E402
from tests.conftest import NodeProcess  # noqa: E402

SECRET = "violin-ranger-crisply-outdoors-geology-unpaved-sixtieth"
API_PORT = 3000
REDIS_PORT = 6390


class NsNode(NodeProcess):
    """A NodeProcess bound to a LAN address, optionally started inside another namespace."""

    def __init__(self, home: Path, env: dict, address: str, prefix: list[str]) -> None:
        super().__init__(home, {**env, "HOST": address}, port=API_PORT)
        self.url = f"http://{address}:{API_PORT}"
        self.command_prefix = prefix  # e.g. ip netns exec NS_HOST


def main(home: Path, ns_host: str, ns_evil: str, host_addr: str, joiner_addr: str, evil_addr: str) -> None:
    out: dict = {}
    common = {"SAYIT_DISCOVERY": "on", "SAYIT_ENGINE": "simulated", "MAX_CONCURRENT_CHUNKS": "1",
              "SAYIT_CLUSTER_SECRET": SECRET}
    password = ClusterKeys.derive(SECRET).redis_password
    record = home / "evil-record"
    procs: list = []
    evil = None
    try:
        host = NsNode(home / "host", {**common, "WORKER_ID": "host", "SAYIT_HOST_REDIS": "1",
                                      "SAYIT_HOSTED_REDIS_PORT": str(REDIS_PORT)},
                      host_addr, ["ip", "netns", "exec", ns_host])
        procs.append(host.start())
        host_id = httpx.get(host.url + "/api/health").json()["nodeId"]

        evil = subprocess.Popen(
            ["ip", "netns", "exec", ns_evil, sys.executable, str(ROOT / "tests" / "netns_helpers" / "impostor.py"),
             evil_addr, host_id, str(record)],
            stdout=subprocess.PIPE, stderr=open(home / "evil.log", "ab"), text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        ready = json.loads(evil.stdout.readline())
        out["evil_ready"] = ready
        time.sleep(2.0)  # its adverts are on the LAN before the joiner starts

        joiner = NsNode(home / "joiner", {**common, "WORKER_ID": "joiner"}, joiner_addr, [])
        started = time.monotonic()
        procs.append(joiner.start())
        out["joiner_start_seconds"] = round(time.monotonic() - started, 2)
        time.sleep(3.0)
        diag = httpx.get(joiner.url + "/api/diagnose").json()
        out["joiner_mode"] = diag["mode"]
        out["joiner_rejected"] = diag["discovery"]["rejectedAdverts"]
        out["joiner_warnings"] = diag["warnings"]
        out["joiner_sees"] = sorted(n["name"] for n in httpx.get(joiner.url + "/api/nodes").json()["nodes"])
        out["host_sees"] = sorted(n["name"] for n in httpx.get(host.url + "/api/nodes").json()["nodes"])
        # A job sent to the joiner is done in the real cluster: the host serves its result.
        out["job_on_host"] = job_completes_on(host.url, joiner.url, home / "speech.wav",
                                              "Hello from the joining node. " * 4)
        log = (home / "joiner" / "node.log").read_text()
        out["joiner_log_foreign_lines"] = log.count(f"another SayIt cluster at {evil_addr}")

        def recorded() -> dict[str, bytes]:
            return {p.name: p.read_bytes() for p in sorted(record.glob("*"))} if record.exists() else {}

        seen = recorded()
        out["recorded_bytes"] = {name: len(data) for name, data in seen.items()}
        out["ports_contacted_at_evil"] = sorted(set(seen.get("any-port.ports", b"").decode().split()))
        out["password_bytes_at_evil"] = sum(data.count(password.encode()) for data in seen.values())
        out["secret_bytes_at_evil"] = sum(data.count(SECRET.encode()) for data in seen.values())

        # Control: a client that trusted the impostor's address and spoke plain Redis would have
        # handed it the password -- the recorder sees it (so the zero above can fail).
        import redis as redis_py

        try:
            redis_py.Redis(host=evil_addr, port=REDIS_PORT, password=password, socket_timeout=2).ping()
        except Exception:
            pass
        time.sleep(0.5)
        after = recorded()
        out["control_password_bytes_at_evil"] = sum(data.count(password.encode()) for data in after.values())
        out["control_password_seen_by_raw_socket"] = after.get("any-port.in", b"").count(password.encode())
    finally:
        if evil is not None:
            evil.send_signal(signal.SIGKILL)
            evil.wait(5)
        for node in reversed(procs):
            node.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:7])
