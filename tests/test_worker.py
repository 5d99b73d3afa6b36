"""`sayit-node worker`: worker-only processes (no API) share a job with an API node via Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest
import redis as redis_py

from tests.conftest import NodeProcess, submit_job, wait_job
from tests.speech import wer

pytestmark = pytest.mark.slow


def start_worker(home, env) -> tuple[subprocess.Popen, NodeProcess]:
    """A `sayit-node worker` child; NodeProcess only lends it the same isolated environment."""
    spec = NodeProcess(home, env)
    proc = subprocess.Popen([sys.executable, "-m", "sayit_node", "worker"], env=spec.env, cwd=home,
                            stdout=open(spec.log, "ab"), stderr=subprocess.STDOUT)
    return proc, spec


def wait_members(client: httpx.Client, names: set[str], timeout: float = 60) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = {n["name"]: n for n in client.get("/api/nodes").json()["nodes"]}
        if names <= members.keys():
            return members
        time.sleep(0.2)
    raise TimeoutError(f"{names} not in {members.keys()}")


def running_on(r: redis_py.Redis, job_id: str, worker_id: str) -> bool:
    chunks = r.hgetall(f"sayit:v1:job:{job_id}:chunks")
    return any(k.endswith(b":worker") and v.decode() == worker_id
               and chunks.get(k.replace(b":worker", b":status")) == b"running" for k, v in chunks.items())


def test_two_workers_and_an_api_node_share_a_job_and_a_killed_worker_loses_nothing(
        node_factory, redis, all_speech, tmp_path):
    path, reference = all_speech
    env = {"REDIS_URL": redis.url, "MAX_CONCURRENT_CHUNKS": "1"}
    api = node_factory(env={**env, "WORKER_ID": "api"})
    workers = [start_worker(tmp_path / f"w{i}", {**env, "WORKER_ID": f"w{i}"}) for i in (1, 2)]
    try:
        with api.client() as client:
            members = wait_members(client, {"api", "w1", "w2"})
            assert members["w1"]["role"] == "worker" and members["w1"]["url"] is None
            victim_id = members["w1"]["id"]
            job_id = submit_job(client, path)
            r = redis_py.Redis.from_url(redis.url)
            deadline = time.monotonic() + 120
            while not running_on(r, job_id, victim_id):  # w1 is in the middle of a chunk
                assert time.monotonic() < deadline, "worker w1 never took a chunk"
                time.sleep(0.02)
            workers[0][0].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            job = wait_job(client, job_id)
            print(f"job finished {time.monotonic() - killed_at:.1f}s after worker w1 was killed mid-chunk")
            assert job["status"] == "completed" and job["completedChunks"] == job["totalChunks"]
            done_by = {v.decode() for k, v in r.hgetall(f"sayit:v1:job:{job_id}:chunks").items()
                       if k.endswith(b":worker")}
            assert members["w2"]["id"] in done_by, "the surviving worker took chunks"
            text = client.get(f"/api/jobs/{job_id}/result", params={"format": "text"}).text
            assert wer(reference, text) < 15
        # A graceful stop of the surviving worker exits promptly with status 0.
        survivor = workers[1][0]
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(20) == 0
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_worker_without_redis_says_what_to_set(tmp_path):
    proc, spec = start_worker(tmp_path / "w", {})
    assert proc.wait(60) == 2
    log = spec.log.read_text()
    assert "REDIS_URL" in log and "Traceback" not in log
