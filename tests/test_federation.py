"""Federation with real node processes sharing a real redis-server on loopback."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.redis_fixture import start_redis
from tests.speech import wer

pytestmark = pytest.mark.slow


@pytest.fixture
def redis(tmp_path):
    server = start_redis(tmp_path / "redis", appendonly=True, password="s3cret")
    yield server
    server.stop()


def _submit(client, path) -> str:
    response = client.post("/api/transcribe", files={"audio": path.open("rb")}, data={"async": "true"})
    assert response.status_code == 202, response.text
    return response.json()["jobId"]


def _wait(client, job_id, timeout=240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job = client.get(f"/api/jobs/{job_id}").json()
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job_id)


def _active_chunks(node) -> int:
    me = [n for n in httpx.get(node.url + "/api/nodes", timeout=5).json()["nodes"] if n["self"]][0]
    return me["load"]["activeChunks"]


def test_two_nodes_share_a_job_and_any_node_serves_it(node_factory, redis, all_speech):
    path, reference = all_speech
    a = node_factory(env={"REDIS_URL": redis.url, "WORKER_ID": "alpha", "MAX_CONCURRENT_CHUNKS": "1"})
    b = node_factory(env={"REDIS_URL": redis.url, "WORKER_ID": "beta", "MAX_CONCURRENT_CHUNKS": "1"})
    with a.client() as ca, b.client() as cb:
        names = {n["name"]: n for n in ca.get("/api/nodes").json()["nodes"]}
        deadline = time.monotonic() + 10
        while "beta" not in names and time.monotonic() < deadline:
            time.sleep(0.2)
            names = {n["name"]: n for n in ca.get("/api/nodes").json()["nodes"]}
        assert names["beta"]["state"] == "up" and names["beta"]["self"] is False
        job_id = _submit(ca, path)
        busy_b = False
        while (job := cb.get(f"/api/jobs/{job_id}").json())["status"] not in ("completed", "failed"):
            busy_b = busy_b or _active_chunks(b) > 0
            time.sleep(0.1)
        assert job["status"] == "completed" and busy_b, "the second node took chunks"
        text = cb.get(f"/api/jobs/{job_id}/result", params={"format": "text"}).text
        assert wer(reference, text) < 15
        assert ca.get(f"/api/jobs/{job_id}/result", params={"format": "text"}).text == text
        assert cb.get("/api/diagnose").json()["mode"] == "federated"


def test_sigkill_worker_mid_chunk_reruns_it_and_origin_death_loses_nothing(node_factory, redis, all_speech):
    path, reference = all_speech
    env = {"REDIS_URL": redis.url, "MAX_CONCURRENT_CHUNKS": "1"}
    origin = node_factory(env={**env, "WORKER_ID": "origin"})
    worker = node_factory(env={**env, "WORKER_ID": "worker"})
    survivor = node_factory(env={**env, "WORKER_ID": "survivor"})
    with origin.client() as client:
        job_id = _submit(client, path)
    while _active_chunks(worker) == 0:  # the worker is in the middle of a chunk
        time.sleep(0.02)
    worker.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    origin.kill(signal.SIGKILL)  # and the node that took the upload dies too
    with survivor.client() as client:
        job = _wait(client, job_id)
        elapsed = time.monotonic() - killed_at
        print(f"job finished {elapsed:.1f}s after its worker and origin were killed")
        assert job["status"] == "completed" and job["completedChunks"] == job["totalChunks"]
        text = client.get(f"/api/jobs/{job_id}/result", params={"format": "text"}).text
    assert wer(reference, text) < 15
    assert elapsed < 30 + 60  # lost chunk rerun within the lease (15 s) + reaper (5 s); generous bound


def test_graceful_stop_hands_chunks_back_at_once(node_factory, redis, minute_speech):
    path, _ = minute_speech
    env = {"REDIS_URL": redis.url, "MAX_CONCURRENT_CHUNKS": "1", "SAYIT_ENGINE": "simulated",
           "SAYIT_SIMULATED_COST": "0.5"}  # 2x real time: a 25 s chunk takes ~12 s
    a = node_factory(env={**env, "WORKER_ID": "a"})
    b = node_factory(env={**env, "WORKER_ID": "b"})
    with a.client() as client:
        job_id = _submit(client, path)
        while _active_chunks(b) == 0:
            time.sleep(0.02)
        b.kill(signal.SIGTERM)
        stopped = time.monotonic()
        job = _wait(client, job_id, timeout=120)
    assert job["status"] == "completed"
    # With a 15 s lease, waiting for expiry would add >15 s; handed back, a (1 chunk at a time)
    # runs the remaining chunks back to back.
    print(f"completed {time.monotonic() - stopped:.1f}s after SIGTERM")


def test_redis_restart_with_aof_resumes_jobs(node_factory, redis, minute_speech):
    path, _ = minute_speech
    env = {"REDIS_URL": redis.url, "MAX_CONCURRENT_CHUNKS": "1", "SAYIT_ENGINE": "simulated",
           "SAYIT_SIMULATED_COST": "0.1"}
    node = node_factory(env=env)
    with node.client() as client:
        job_id = _submit(client, path)
        redis.restart(pause=1.0)
        job = _wait(client, job_id, timeout=120)
    assert job["status"] == "completed" and job["completedChunks"] == job["totalChunks"]


def test_only_nodes_serving_the_model_take_its_chunks(node_factory, redis, minute_speech):
    path, _ = minute_speech
    env = {"REDIS_URL": redis.url, "SAYIT_ENGINE": "simulated", "MAX_CONCURRENT_CHUNKS": "1"}
    other = node_factory(env={**env, "SAYIT_MODEL": "large-v3", "WORKER_ID": "other"})
    serving = node_factory(env={**env, "SAYIT_MODEL": "base", "WORKER_ID": "serving",
                                "SAYIT_SIMULATED_COST": "0.5"})
    with serving.client() as client:
        job_id = _submit(client, path)
        assert client.get(f"/api/jobs/{job_id}").json()["model"] == "base"
    while _active_chunks(serving) == 0:
        time.sleep(0.02)
    serving.kill(signal.SIGTERM)  # the only node serving `base` leaves
    with other.client() as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            job = client.get(f"/api/jobs/{job_id}").json()
            if job.get("warning"):
                break
            time.sleep(0.5)
        assert "base" in job["warning"] and job["status"] in ("queued", "running")
        done = job["completedChunks"]
        time.sleep(3)
        job = client.get(f"/api/jobs/{job_id}").json()
        assert job["completedChunks"] == done and _active_chunks(other) == 0, "large-v3 node left base chunks alone"
        assert {n["name"] for n in client.get("/api/nodes").json()["nodes"]} == {"other"}


def test_wrong_redis_password_is_refused(node_factory, redis, tmp_path):
    bad_url = redis.url.replace("s3cret", "wrong")
    node = node_factory(env={"REDIS_URL": bad_url}, start=False)
    with pytest.raises(RuntimeError) as exc:
        node.start(timeout=30)
    assert "Redis" in str(exc.value)
