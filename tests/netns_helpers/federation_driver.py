"""Runs inside `unshare -n` (loopback only): real nodes discover each other and join a cluster.

Prints one JSON object with what it observed; tests/test_federation_discovery.py asserts on it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from shared import job_completes_on, wait_for  # noqa: E402
from tests.conftest import NodeProcess, free_port  # noqa: E402


def names(node) -> dict:
    return {n["name"]: n for n in httpx.get(node.url + "/api/nodes", timeout=5).json()["nodes"]}


def main(home: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out: dict = {}
    common = {"SAYIT_DISCOVERY": "on", "SAYIT_ENGINE": "simulated", "MAX_CONCURRENT_CHUNKS": "1"}
    nodes = []
    try:
        host = NodeProcess(home / "host", {**common, "WORKER_ID": "host", "SAYIT_HOST_REDIS": "1",
                                           "SAYIT_HOSTED_REDIS_PORT": str(free_port())})
        nodes.append(host.start())
        joiner = NodeProcess(home / "joiner", {**common, "WORKER_ID": "joiner"})
        nodes.append(joiner.start())
        out["host_mode"] = httpx.get(host.url + "/api/diagnose").json()["mode"]
        out["joiner_mode"] = httpx.get(joiner.url + "/api/diagnose").json()["mode"]
        out["host_sees_joiner"] = wait_for(lambda: "joiner" in names(host), 10)

        late = NodeProcess(home / "late", {**common, "WORKER_ID": "late"})
        nodes.append(late)
        late.start()
        started = time.monotonic()
        seen = wait_for(lambda: "late" in names(host), 15)
        out["new_peer_seen_after"] = None if seen is None else time.monotonic() - started
        late.kill(signal.SIGKILL)
        out["dead_peer_gone_after"] = wait_for(lambda: "late" not in names(host), 30)

        stranger = NodeProcess(home / "stranger", {**common, "WORKER_ID": "stranger",
                                                   "SAYIT_CLUSTER_SECRET": "pyramid-fossil-gumball-tripod-unlaced-salami-vividly"})
        nodes.append(stranger.start())
        time.sleep(3)
        diag = httpx.get(stranger.url + "/api/diagnose").json()
        out["stranger_mode"] = diag["mode"]
        # both sides say there is another cluster (a wrong secret is the commonest mistake)
        out["stranger_warns"] = [w for w in diag["warnings"] if "another SayIt cluster at" in w]
        out["host_warns"] = [w for w in httpx.get(host.url + "/api/diagnose").json()["warnings"]
                             if "another SayIt cluster at" in w]
        out["host_rejected"] = httpx.get(host.url + "/api/diagnose").json()["discovery"]["rejectedAdverts"]
        out["host_lists_stranger"] = "stranger" in names(host)

        # A job sent to the joiner runs in the cluster and the host serves its result.
        out["job_on_host"] = job_completes_on(host.url, joiner.url, home / "speech.wav",
                                              "Hello from the joining node. " * 6)
    finally:
        for node in reversed(nodes):
            node.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
