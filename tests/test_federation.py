"""Federation with real node processes sharing a real redis-server on loopback."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.conftest import submit_job, wait_job
from tests.speech import wer

pytestmark = pytest.mark.slow


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
        job_id = submit_job(ca, path)
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
        job_id = submit_job(client, path)
    while _active_chunks(worker) == 0:  # the worker is in the middle of a chunk
        time.sleep(0.02)
    worker.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    origin.kill(signal.SIGKILL)  # and the node that took the upload dies too
    with survivor.client() as client:
        job = wait_job(client, job_id)
        elapsed = time.monotonic() - killed_at
        print(f"job finished {elapsed:.1f}s after its worker and origin were killed")
        assert job["status"] == "completed" and job["completedChunks"] == job["totalChunks"]
        text = client.get(f"/api/jobs/{job_id}/result", params={"format": "text"}).text
    assert wer(reference, text) < 15
    assert elapsed < 30 + 60  # lost chunk rerun within the lease (15 s) + reaper (5 s); generous bound


def test_graceful_stop_hands_chunks_back_at_once(node_factory, redis, minute_speech):
    import redis as redis_py

    path, _ = minute_speech
    env = {"REDIS_URL": redis.url, "MAX_CONCURRENT_CHUNKS": "1", "SAYIT_ENGINE": "simulated",
           "SAYIT_SIMULATED_COST": "0.5"}  # 2x real time: a 25 s chunk takes ~12 s
    a = node_factory(env={**env, "WORKER_ID": "a"})
    b = node_factory(env={**env, "WORKER_ID": "b"})
    b_id = httpx.get(b.url + "/api/health").json()["nodeId"]
    db = redis_py.Redis.from_url(redis.url)
    with a.client() as client:
        job_id = submit_job(client, path)
        while _active_chunks(b) == 0:
            time.sleep(0.02)
        assert db.scard(f"sayit:v1:worker:{b_id}") == 1
        b.kill(signal.SIGTERM)
        # b exited: its chunk is back in the queue now, not after the 15 s lease.
        assert db.scard(f"sayit:v1:worker:{b_id}") == 0
        assert not [m for m in db.zrange("sayit:v1:leases", 0, -1) if m.decode().startswith(job_id)
                    and db.sismember(f"sayit:v1:worker:{b_id}", m)]
        job = wait_job(client, job_id, timeout=120)
    assert job["status"] == "completed" and job["completedChunks"] == job["totalChunks"]


def test_redis_restart_with_aof_resumes_jobs(node_factory, redis, minute_speech):
    path, _ = minute_speech
    env = {"REDIS_URL": redis.url, "MAX_CONCURRENT_CHUNKS": "1", "SAYIT_ENGINE": "simulated",
           "SAYIT_SIMULATED_COST": "0.1"}
    node = node_factory(env=env)
    with node.client() as client:
        job_id = submit_job(client, path)
        redis.restart(pause=1.0)
        job = wait_job(client, job_id, timeout=120)
    assert job["status"] == "completed" and job["completedChunks"] == job["totalChunks"]


def test_only_nodes_serving_the_model_take_its_chunks(node_factory, redis, minute_speech):
    path, _ = minute_speech
    env = {"REDIS_URL": redis.url, "SAYIT_ENGINE": "simulated", "MAX_CONCURRENT_CHUNKS": "1"}
    other = node_factory(env={**env, "SAYIT_MODEL": "large-v3", "WORKER_ID": "other"})
    serving = node_factory(env={**env, "SAYIT_MODEL": "base", "WORKER_ID": "serving",
                                "SAYIT_SIMULATED_COST": "0.5"})
    with serving.client() as client:
        job_id = submit_job(client, path)
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


def test_a_node_of_another_protocol_is_listed_incompatible(node_factory, redis):
    import asyncio
    from datetime import datetime, timezone

    from sayit_node.federation.registry import NodeRegistry

    node = node_factory(env={"REDIS_URL": redis.url, "SAYIT_ENGINE": "simulated"})

    async def publish_future_node():
        registry = NodeRegistry(redis.url, "future-node")
        await registry.publish({"id": "future-node", "name": "future", "protocol": 99, "state": "up",
                                "model": "tiny.en", "lastSeen": datetime.now(timezone.utc).isoformat()}, ttl=30)
        await registry.close()

    asyncio.run(publish_future_node())
    nodes = {n["name"]: n for n in httpx.get(node.url + "/api/nodes").json()["nodes"]}
    assert nodes["future"]["state"] == "incompatible"
    # ... and its model does not count as served: its keyspace (sayit:v99:) is not ours.
    from sayit_node.federation.advert import PROTOCOL_VERSION

    assert nodes[[n for n in nodes if nodes[n]["self"]][0]]["protocol"] == PROTOCOL_VERSION


def test_host_redis_without_redis_server_says_so(node_factory):
    node = node_factory(env={"SAYIT_HOST_REDIS": "1", "SAYIT_REDIS_SERVER": "no-such-redis-server"}, start=False)
    with pytest.raises(RuntimeError):
        node.start(timeout=30)
    assert "install redis-server" in node.log.read_text()


def test_hosted_redis_stops_with_its_node_even_on_sigkill(node_factory):
    import psutil

    from tests.conftest import free_port

    port = free_port()
    node = node_factory(env={"SAYIT_HOST_REDIS": "1", "SAYIT_HOSTED_REDIS_PORT": str(port)})
    assert httpx.get(node.url + "/api/diagnose").json()["mode"] == "federated"
    children = psutil.Process(node.proc.pid).children()
    assert any("redis-server" in " ".join(c.cmdline()) for c in children)
    node.kill(signal.SIGKILL)
    psutil.wait_procs(children, timeout=10)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
