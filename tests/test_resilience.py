"""A cluster that loses a part: real node processes, a real redis-server, real signals.

Issue 8 ("LAN trust"), resilience items: losing Redis, start-up failures, stopping, the
data-directory lock, duplicate node ids, file modes, corrupt stored work.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import submit_job, wait_job

pytestmark = pytest.mark.slow

SIMULATED = {"SAYIT_ENGINE": "simulated", "MAX_CONCURRENT_CHUNKS": "1"}


def _until(predicate, timeout: float = 10.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(predicate)


def test_losing_redis_degrades_with_clear_answers_and_recovers_without_losing_the_job(
        node_factory, redis, minute_speech):
    path, _ = minute_speech
    node = node_factory(env={"REDIS_URL": redis.url, **SIMULATED, "SAYIT_SIMULATED_COST": "0.3"})
    address = f"127.0.0.1:{redis.port}"
    with node.client(timeout=30) as client:
        job_id = submit_job(client, path)  # accepted: it must survive the outage
        redis.stop()
        health = _until(lambda: (h := client.get("/api/health")).status_code == 200
                        and h.json()["status"] == "degraded" and h.json())
        assert address in health["reason"] and "s3cret" not in health["reason"]

        started = time.monotonic()
        upload = client.post("/api/transcribe", files={"audio": path.open("rb")}, data={"async": "true"})
        assert upload.status_code == 503, upload.text
        error = upload.json()["error"]
        assert error["code"] == "cluster_unavailable" and address in error["message"]
        assert upload.headers["retry-after"]
        openai = client.post("/v1/audio/transcriptions", files={"file": path.open("rb")}, data={"model": "whisper-1"})
        assert openai.status_code == 503 and openai.json()["error"]["code"] == "cluster_unavailable"
        assert time.monotonic() - started < 5, "refused at once, not after the store's reconnect attempts"

        nodes = client.get("/api/nodes")
        assert nodes.status_code == 200
        assert nodes.json()["nodes"][0]["state"] == "degraded" and address in nodes.json()["warning"]
        diagnose = client.get("/api/diagnose")
        assert diagnose.status_code == 200
        assert diagnose.json()["store"]["available"] is False
        assert any(address in w for w in diagnose.json()["warnings"])
        assert client.get(f"/api/jobs/{job_id}").status_code == 503

        time.sleep(3)
        redis.start()  # same port and AOF directory: the accepted job is still there
        _until(lambda: client.get("/api/health").json()["status"] == "ok", timeout=10)
        job = wait_job(client, job_id, timeout=120)
        assert job["status"] == "completed" and job["completedChunks"] == job["totalChunks"]
        again = client.post("/api/transcribe", files={"audio": path.open("rb")}, data={"async": "true"})
        assert again.status_code == 202
        assert wait_job(client, again.json()["jobId"], timeout=120)["status"] == "completed"
    node.stop()
    log = node.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "lost the cluster's Redis" in log and "is back after" in log


# --- start-up and stopping ------------------------------------------------------------------

def _failed_start(node_factory, env, timeout=30):
    node = node_factory(env=env, start=False)
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        node.start(timeout=timeout)
    return node, time.monotonic() - started


@pytest.mark.parametrize("case", ["wrong", "missing"])
def test_a_bad_redis_password_fails_fast_with_one_line_that_says_what_to_set(node_factory, redis, case):
    url = redis.url.replace("s3cret", "wrong") if case == "wrong" else redis.url.replace(":s3cret@", "")
    node, took = _failed_start(node_factory, {"REDIS_URL": url, **SIMULATED})
    assert node.proc.returncode == 2
    log = node.log.read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert f"127.0.0.1:{redis.port}" in errors[0] and "set REDIS_URL" in errors[0]
    assert ("refused the password" if case == "wrong" else "needs a password") in errors[0]
    assert "s3cret" not in log and "wrong@" not in log and "Traceback" not in log
    assert took < 20


def _silent_server():
    """A TCP port that accepts connections and never answers (a hung or firewalled Redis)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_a_silent_redis_ends_the_start_and_sigterm_while_starting_stops_at_once(node_factory):
    import signal

    sock = _silent_server()
    try:
        url = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        node, took = _failed_start(node_factory, {"REDIS_URL": url, **SIMULATED})
        assert node.proc.returncode == 2 and "cannot reach the cluster's Redis" in node.log.read_text()
        assert took < 25

        node = node_factory(env={"REDIS_URL": url, **SIMULATED}, start=False)
        node.proc = __import__("subprocess").Popen(
            [__import__("sys").executable, "-m", "sayit_node", "serve"], env=node.env, cwd=node.home,
            stdout=open(node.log, "ab"), stderr=__import__("subprocess").STDOUT)
        _until(lambda: "connecting to the cluster's Redis" in node.log.read_text() or node.proc.poll() is not None,
               timeout=30, step=0.05)
        time.sleep(0.5)  # inside the start now, waiting for the silent Redis (up to 5 s)
        assert node.proc.poll() is None
        stopped_at = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        node.proc.wait(15)
        assert time.monotonic() - stopped_at < 5, "SIGTERM during the start ends it"
        assert "Traceback" not in node.log.read_text()
    finally:
        sock.close()


def test_sigterm_stops_a_node_within_seconds_while_its_engine_is_busy_and_redis_is_gone(
        node_factory, redis, minute_speech):
    import signal

    path, _ = minute_speech
    # 25 s chunks at 4 s per audio second: the engine thread is busy for ~100 s.
    node = node_factory(env={"REDIS_URL": redis.url, **SIMULATED, "SAYIT_SIMULATED_COST": "4"})
    with node.client(timeout=30) as client:
        submit_job(client, path)
        _until(lambda: client.get("/api/nodes").json()["nodes"][0]["load"]["activeChunks"] > 0)
        redis.stop(hard=True)
        _until(lambda: client.get("/api/health").json()["status"] == "degraded")
    stopped_at = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    node.proc.wait(20)
    took = time.monotonic() - stopped_at
    print(f"stopped {took:.1f} s after SIGTERM")
    assert took < 10.5  # forced after 8 s at the latest
    assert "Traceback" not in node.log.read_text()


# --- one node per data directory, one process per node id ----------------------------------

def test_a_second_node_on_the_same_data_directory_exits_at_once_and_the_first_is_untouched(node_factory, tmp_path):
    first = node_factory(env=SIMULATED, home=tmp_path / "first")
    first_id = httpx.get(first.url + "/api/health").json()["nodeId"]
    second = node_factory(env={**SIMULATED, "SAYIT_DATA_DIR": str(tmp_path / "first" / "data")},
                          home=tmp_path / "second", start=False)
    with pytest.raises(RuntimeError):
        second.start(timeout=30)
    assert second.proc.returncode == 2
    log = second.log.read_text()
    assert f"pid {first.proc.pid}" in log and "SAYIT_DATA_DIR" in log and "Traceback" not in log
    assert httpx.get(first.url + "/api/health").json()["nodeId"] == first_id
    assert (tmp_path / "first" / "data" / "node_id").read_text().strip() == first_id
    first.stop()
    second.start()  # the lock went with the first process
    assert httpx.get(second.url + "/api/health").json()["nodeId"] == first_id


def test_a_node_id_alive_elsewhere_in_the_cluster_is_refused_but_a_crashed_ones_restart_is_not(
        node_factory, redis, tmp_path):
    import shutil
    import signal

    env = {"REDIS_URL": redis.url, **SIMULATED}
    first = node_factory(env={**env, "WORKER_ID": "first"}, home=tmp_path / "first")
    first_id = httpx.get(first.url + "/api/health").json()["nodeId"]
    (tmp_path / "copy" / "data").mkdir(parents=True)
    shutil.copy(tmp_path / "first" / "data" / "node_id", tmp_path / "copy" / "data" / "node_id")
    copy = node_factory(env={**env, "WORKER_ID": "copy"}, home=tmp_path / "copy", start=False)
    with pytest.raises(RuntimeError):
        copy.start(timeout=30)
    assert copy.proc.returncode == 2
    line = [ln for ln in copy.log.read_text().splitlines() if " ERROR " in ln][0]
    assert first_id in line and "'first'" in line and "node_id" in line
    assert httpx.get(first.url + "/api/health").json()["status"] == "ok"
    # A node killed and restarted at once finds its own stale heartbeat: that is not a clash.
    first.kill(signal.SIGKILL)
    first.start()
    assert httpx.get(first.url + "/api/health").json()["nodeId"] == first_id


# --- file modes -------------------------------------------------------------------------------

def test_data_and_log_files_are_private(node_factory, tmp_path, short_speech):
    import os
    import stat

    from tests.conftest import free_port

    home = tmp_path / "n"
    (home / "data").mkdir(parents=True)
    (home / "data").chmod(0o755)  # made by an older version: tightened at start
    node = node_factory(env={**SIMULATED, "SAYIT_HOST_REDIS": "1", "SAYIT_HOSTED_REDIS_PORT": str(free_port())},
                        home=home)
    with node.client() as client:
        submit_job(client, short_speech[0])
    node.stop()
    standalone = node_factory(env=SIMULATED, home=tmp_path / "s")
    with standalone.client() as client:
        wait_job(client, submit_job(client, short_speech[0]))
    seen = []
    for root in (home / "data", home / "logs", tmp_path / "s" / "data", tmp_path / "s" / "logs"):
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            want = 0o700 if path.is_dir() else 0o600
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}, want {oct(want)}"
            seen.append(path.relative_to(tmp_path).as_posix())
    for expected in ("n/data/node_id", "n/data/redis", "n/logs/sayit-node.log", "s/data/sayit.db"):
        assert expected in seen, seen
    assert any(p.startswith("n/data/redis/") for p in seen), "the AOF files were checked"
    assert os.stat(tmp_path / "s" / "data" / "sayit.db").st_mode & 0o077 == 0


# --- stored work that is not what a node wrote ----------------------------------------------

def test_bad_stored_options_and_a_corrupt_chunk_fail_their_jobs_with_a_reason(node_factory, redis, short_speech):
    """Anyone holding the Redis password can write jobs: a worker checks what it reads."""
    import asyncio
    import json

    import redis as redis_py

    from sayit_node.jobs.records import ChunkRecord, JobOptions, JobRecord
    from sayit_node.jobs.redis_store import RedisJobStore
    from sayit_node.node import STORE_SCHEMA

    prefix = f"sayit:v{STORE_SCHEMA}:"

    async def plant():
        store = RedisJobStore(redis.url, retention_seconds=600, key_prefix=prefix)
        for job_id in ("badopts", "badjson", "corrupt", "good"):
            job = JobRecord(id=job_id, model="tiny.en", options=JobOptions(language="en"), duration=2.0,
                            language="en", filename=f"{job_id}.wav")
            pcm = bytes(64001) if job_id == "corrupt" else bytes(64000)  # odd length: not 16-bit PCM
            await store.create_job(job, [ChunkRecord(job_id, 0, 0, 32000)], [pcm])
        await store.close()

    asyncio.run(plant())
    raw = redis_py.Redis.from_url(redis.url)
    raw.hset(f"{prefix}job:badopts", "options", json.dumps({"temperature": "hot", "beam_size": 10**9}))
    raw.hset(f"{prefix}job:badjson", "options", b"{not json")
    node = node_factory(env={"REDIS_URL": redis.url, **SIMULATED})
    with node.client(timeout=30) as client:
        jobs = {job_id: wait_job(client, job_id, timeout=60) for job_id in ("badopts", "badjson", "corrupt", "good")}
        assert jobs["good"]["status"] == "completed"
        for job_id in ("badopts", "badjson", "corrupt"):
            assert jobs[job_id]["status"] == "failed", jobs[job_id]
            assert "failed 3 times" in jobs[job_id]["error"]
        assert "temperature" in jobs["badopts"]["error"]
        assert "JSON" in jobs["badjson"]["error"]
        assert "16-bit PCM" in jobs["corrupt"]["error"]
        assert client.get("/api/jobs").status_code == 200, "listing jobs with bad options still works"
        assert client.get("/api/health").json()["status"] == "ok"
        assert wait_job(client, submit_job(client, short_speech[0]))["status"] == "completed"
    log = node.log.read_text()
    assert "Traceback" not in log, log[-3000:]
