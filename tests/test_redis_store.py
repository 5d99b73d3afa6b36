"""The Redis job store (federation) and the Redis node registry, against a real redis-server.

Mirrors the SQLite store's semantics (tests/test_store.py) and adds what sharing one Redis
between nodes needs: atomic concurrent claims, leases that live workers renew and a reconciler
requeues when they lapse, graceful hand-back, a redelivery cap, retention expiry, a memory
budget, configuration warnings, and surviving a Redis restart with AOF.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from sayit_node.federation.registry import NodeRegistry
from sayit_node.jobs.records import ChunkRecord, JobOptions, JobRecord
from sayit_node.jobs.redis_store import RedisJobStore
from sayit_node.jobs.store import StoreFull
from tests.redis_fixture import redis_server, start_redis  # noqa: F401  (fixture)

pytestmark = pytest.mark.asyncio(loop_scope="function")

SEG = [{"start": 0.0, "end": 1.0, "text": " hi", "tokens": [1], "temperature": 0.0, "avg_logprob": -0.1,
        "compression_ratio": 1.0, "no_speech_prob": 0.0, "words": None}]


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def prefix():
    return _prefix()


@pytest_asyncio.fixture(loop_scope="function")  # the client lives on the test's loop
async def store(redis_server, prefix):
    store = RedisJobStore(redis_server.url, retention_seconds=600, key_prefix=prefix)
    yield store
    await store.close()


@pytest_asyncio.fixture(loop_scope="function")  # the client lives on the test's loop
async def raw(redis_server):
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def _job(store, job_id: str, chunks: int, created: float | None = None, model: str = "tiny.en") -> JobRecord:
    job = JobRecord(id=job_id, model=model, options=JobOptions(language="en", beam_size=3), duration=chunks * 10.0,
                    language="en", filename=f"{job_id}.wav", created_at=created or time.time())
    records = [ChunkRecord(job_id, i, i * 160000, (i + 1) * 160000) for i in range(chunks)]
    await store.create_job(job, records, [bytes([i % 256, 1]) * 100 for i in range(chunks)])
    return job


async def _wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(step)
    return await predicate()


# --- the SQLite store's semantics -------------------------------------------------------------

async def test_job_round_trips(store):
    job = await _job(store, "j", 2)
    got = await store.get_job("j")
    assert (got.id, got.model, got.status, got.language, got.filename, got.total_chunks) == \
        ("j", "tiny.en", "queued", "en", "j.wav", 2)
    assert got.options == job.options and got.created_at == job.created_at and got.duration == 20.0
    chunks = await store.chunks("j")
    assert [(c.index, c.start, c.end, c.status) for c in chunks] == [(0, 0, 160000, "queued"),
                                                                    (1, 160000, 320000, "queued")]
    assert await store.get_job("nope") is None and await store.chunks("nope") == []
    assert [j.id for j in await store.list_jobs()] == ["j"]


async def test_claims_round_robin_across_jobs(store):
    await _job(store, "long", 10, created=1.0)
    await _job(store, "short", 2, created=2.0)
    claims = [await store.claim_next_chunk("w", ["tiny.en"]) for _ in range(4)]
    assert claims == [("long", 0), ("short", 0), ("long", 1), ("short", 1)]
    job = await store.get_job("long")
    assert job.status == "running" and job.started_at


async def test_round_robin_prefers_the_job_with_fewer_chunks_in_flight(store):
    await _job(store, "a", 5, created=1.0)
    await _job(store, "b", 5, created=2.0)
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("a", 0)
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("b", 0)
    await store.complete_chunk("a", 0, SEG)  # a has nothing in flight now, b has one
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("a", 1)


async def test_only_jobs_of_served_models_are_claimed(store):
    await _job(store, "a", 1)
    await _job(store, "b", 1, model="base")
    assert await store.claim_next_chunk("w", ["small"]) is None
    assert await store.claim_next_chunk("w", []) is None
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("a", 0)
    assert await store.claim_next_chunk("w", ["tiny.en"]) is None
    assert await store.claim_next_chunk("w", ["tiny.en", "base"]) == ("b", 0)


async def test_load_chunk_gives_audio_and_options(store):
    job = await _job(store, "j", 2)
    work = await store.load_chunk("j", 1)
    assert (work.job_id, work.index, work.model, work.language, work.offset) == ("j", 1, "tiny.en", "en", 160000)
    assert work.options == job.options and work.pcm16 == bytes([1, 1]) * 100
    assert await store.load_chunk("j", 7) is None and await store.load_chunk("x", 0) is None


async def test_complete_is_idempotent_and_finishes_the_job(store, raw, prefix):
    await _job(store, "j", 2)
    await store.claim_next_chunk("w", ["tiny.en"])
    job = await store.complete_chunk("j", 0, SEG)
    job = await store.complete_chunk("j", 0, [{"text": "second run"}])  # a chunk that runs twice does no harm
    assert job.status == "running" and job.completed_chunks == 1
    assert (await store.chunks("j"))[0].segments == SEG, "the second completion is a no-op"
    job = await store.complete_chunk("j", 1, SEG)  # never claimed: still accepted
    assert job.status == "completed" and job.completed_chunks == 2 and job.finished_at and job.progress == 100.0
    assert await store.load_chunk("j", 0) is None, "audio is gone once the job is done"
    assert not await raw.exists(f"{prefix}job:j:audio")
    assert [c.segments for c in await store.chunks("j")] == [SEG, SEG]
    assert await raw.zcard(f"{prefix}leases") == 0
    assert await store.complete_chunk("gone", 0, SEG) is None


async def test_three_failures_fail_the_job_with_the_reason(store, raw, prefix):
    await _job(store, "j", 2)
    job = await store.fail_chunk("j", 1, "boom")
    assert job.status in ("queued", "running")
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 0), "the failed chunk waits for its backoff"
    assert await store.claim_next_chunk("w", ["tiny.en"]) is None
    job = await store.fail_chunk("j", 1, "boom")
    assert job.status != "failed"
    job = await store.fail_chunk("j", 1, "boom again")
    assert job.status == "failed" and "boom again" in job.error and job.failed_chunks == 1
    assert job.error == "chunk 1 failed 3 times: boom again"
    chunk = (await store.chunks("j"))[1]
    assert (chunk.status, chunk.attempts, chunk.error) == ("failed", 3, "boom again")
    assert await store.load_chunk("j", 0) is None
    assert await raw.zcard(f"{prefix}leases") == 0, "a failed job's running chunks lose their leases"
    assert (await store.fail_chunk("j", 0, "late")).status == "failed"


async def test_retry_delay_is_respected(store):
    await _job(store, "j", 1)
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 0)
    await store.fail_chunk("j", 0, "flaky")  # first retry after RETRY_BASE_SECONDS (2 s)
    failed_at = time.monotonic()
    assert await store.claim_next_chunk("w", ["tiny.en"]) is None
    await asyncio.sleep(1.0)
    assert await store.claim_next_chunk("w", ["tiny.en"]) is None, "not before the back-off"
    claimed = await _wait_for(lambda: store.claim_next_chunk("w", ["tiny.en"]), timeout=3.0, step=0.1)
    assert claimed == ("j", 0)
    assert time.monotonic() - failed_at >= 1.9
    chunk = (await store.chunks("j"))[0]
    assert chunk.attempts == 1 and chunk.status == "running"


async def test_cancel_deletes_audio_and_results(store, raw, prefix):
    await _job(store, "j", 3)
    await store.claim_next_chunk("w", ["tiny.en"])
    await store.claim_next_chunk("w", ["tiny.en"])
    await store.complete_chunk("j", 1, SEG)
    job = await store.cancel_job("j")
    assert job.status == "cancelled" and job.finished_at
    assert await store.load_chunk("j", 2) is None
    assert await store.claim_next_chunk("w", ["tiny.en"]) is None
    assert (await store.get_job("j")).status == "cancelled"
    assert all(c.segments is None for c in await store.chunks("j"))
    assert not await raw.exists(f"{prefix}job:j:audio") and not await raw.exists(f"{prefix}job:j:results")
    assert await raw.zcard(f"{prefix}leases") == 0
    assert (await store.complete_chunk("j", 0, SEG)).status == "cancelled", "late results are ignored"
    assert (await store.cancel_job("j")).status == "cancelled"
    assert await store.cancel_job("nope") is None


async def test_delete_removes_a_completed_transcript(store, raw, prefix):
    await _job(store, "j", 1)
    await store.complete_chunk("j", 0, SEG)
    ttl = await raw.pttl(f"{prefix}job:j")
    assert ttl > 0
    assert (await store.cancel_job("j")).status == "cancelled"
    assert (await store.chunks("j"))[0].segments is None
    assert not await raw.exists(f"{prefix}job:j:results")
    assert 0 < await raw.pttl(f"{prefix}job:j") <= ttl, "retention still counts from the job's end"


async def test_requeue_running_after_restart(store, redis_server, prefix):
    await _job(store, "j", 2)
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 0)
    await store.close()
    reopened = RedisJobStore(redis_server.url, retention_seconds=600, key_prefix=prefix)
    try:
        assert await reopened.requeue_running() == 1
        assert await reopened.claim_next_chunk("w", ["tiny.en"]) == ("j", 0)
        assert await reopened.requeue_running("other") == 0
        assert await reopened.requeue_running("w") == 1
        assert (await reopened.chunks("j"))[0].attempts == 0
    finally:
        await reopened.close()


async def test_retention_deletes_only_old_finished_jobs(store):
    await _job(store, "old", 1)
    await _job(store, "running", 1)
    await store.cancel_job("old")
    assert await store.delete_finished_before(time.time() - 3600) == 0
    assert await store.delete_finished_before(time.time() + 1) == 1
    assert await store.get_job("old") is None and await store.get_job("running") is not None
    assert [j.id for j in await store.list_jobs()] == ["running"]


async def test_finished_jobs_expire_in_redis(store, raw, prefix):
    await _job(store, "done", 1)
    await _job(store, "failed", 1)
    await _job(store, "cancelled", 2)
    await _job(store, "open", 1)
    await store.complete_chunk("done", 0, SEG)
    for _ in range(3):
        await store.fail_chunk("failed", 0, "x")
    await store.cancel_job("cancelled")
    for job_id in ("done", "failed", "cancelled"):
        for suffix in ("", ":chunks"):
            ttl = await raw.pttl(f"{prefix}job:{job_id}{suffix}")
            assert 0 < ttl <= 600_000, (job_id, suffix, ttl)
    assert 0 < await raw.pttl(f"{prefix}job:done:results") <= 600_000
    assert await raw.pttl(f"{prefix}job:open") == -1 and await raw.pttl(f"{prefix}job:open:audio") == -1


async def test_short_retention_really_forgets(redis_server, prefix):
    store = RedisJobStore(redis_server.url, retention_seconds=0.3, key_prefix=prefix)
    try:
        await _job(store, "j", 1)
        await store.complete_chunk("j", 0, SEG)
        assert await store.get_job("j") is not None
        await asyncio.sleep(0.5)
        assert await store.get_job("j") is None and await store.chunks("j") == []
        assert await store.list_jobs() == []
        assert (await store.counts()).jobs["completed"] == 0
    finally:
        await store.close()


async def test_empty_plan_completes_at_once(store, raw, prefix):
    job = await _job(store, "silence", 0)
    got = await store.get_job(job.id)
    assert got.status == "completed" and got.progress == 100.0
    assert await raw.pttl(f"{prefix}job:silence") > 0
    assert await store.claim_next_chunk("w", ["tiny.en"]) is None


async def test_counts(store):
    await _job(store, "a", 3)
    await _job(store, "b", 2)
    await _job(store, "c", 2)
    await store.claim_next_chunk("w", ["tiny.en"])  # a0
    await store.claim_next_chunk("w", ["tiny.en"])  # b0
    await store.complete_chunk("b", 0, SEG)
    await store.complete_chunk("b", 1, SEG)
    await store.cancel_job("c")
    counts = await store.counts()
    assert counts.jobs == {"queued": 0, "running": 1, "completed": 1, "failed": 0, "cancelled": 1}
    assert counts.chunks == {"queued": 2, "running": 1, "done": 2, "failed": 0}


async def test_list_jobs_newest_first(store):
    for n in range(5):
        await _job(store, f"j{n}", 1, created=100.0 + n)
    assert [j.id for j in await store.list_jobs(limit=3)] == ["j4", "j3", "j2"]


# --- sharing one Redis between nodes --------------------------------------------------------

async def test_concurrent_claims_never_share_a_chunk(redis_server, prefix):
    stores = [RedisJobStore(redis_server.url, retention_seconds=600, key_prefix=prefix) for _ in range(2)]
    try:
        for n in range(4):
            await _job(stores[0], f"j{n}", 10, created=float(n + 1))
        def claim_many(n):
            return asyncio.gather(*(stores[k % 2].claim_next_chunk(f"node{k % 2}", ["tiny.en"]) for k in range(n)))

        first = await claim_many(8)  # arrival order at Redis is arbitrary, fairness is not
        assert Counter(job_id for job_id, _ in first) == {"j0": 2, "j1": 2, "j2": 2, "j3": 2}
        rest = await claim_many(52)
        got = first + [c for c in rest if c is not None]
        assert len(got) == 40 and len(set(got)) == 40, "no chunk handed out twice"
        assert rest.count(None) == 20
        running = [c for c in await stores[1].chunks("j0") if c.status == "running"]
        assert len(running) == 10 and {c.worker for c in running} <= {"node0", "node1"}
    finally:
        for s in stores:
            await s.close()


async def test_chunks_queued_before_any_worker_are_all_claimable(store):
    for n in range(3):
        await _job(store, f"j{n}", 4)
    claimed = set()
    while (c := await store.claim_next_chunk("late", ["tiny.en"])) is not None:
        claimed.add(c)
    assert claimed == {(f"j{n}", i) for n in range(3) for i in range(4)}


async def test_lease_renewal_and_requeue_of_expired(redis_server, prefix):
    store = RedisJobStore(redis_server.url, retention_seconds=600, lease_seconds=1.0, key_prefix=prefix)
    try:
        await _job(store, "j", 3)
        assert await store.claim_next_chunk("alive", ["tiny.en"]) == ("j", 0)
        assert await store.claim_next_chunk("dead", ["tiny.en"]) == ("j", 1)
        assert await store.requeue_expired() == 0
        deadline = time.monotonic() + 2.5  # well past the 1 s lease
        while time.monotonic() < deadline:
            assert await store.renew_leases("alive") == 1
            await store.requeue_expired()
            await asyncio.sleep(0.25)
        chunks = await store.chunks("j")
        assert (chunks[0].status, chunks[0].worker) == ("running", "alive"), "a renewed lease is never requeued"
        assert (chunks[1].status, chunks[1].worker, chunks[1].attempts) == ("queued", None, 0)
        assert await store.renew_leases("dead") == 0, "a lapsed lease is not renewed"
        assert await store.claim_next_chunk("other", ["tiny.en"]) == ("j", 1)
        assert await store.claim_next_chunk("other", ["tiny.en"]) == ("j", 2)
    finally:
        await store.close()


async def test_a_late_completion_after_a_lost_lease_corrupts_nothing(redis_server, raw, prefix):
    store = RedisJobStore(redis_server.url, retention_seconds=600, lease_seconds=0.3, key_prefix=prefix)
    try:
        await _job(store, "j", 2)
        assert await store.claim_next_chunk("slow", ["tiny.en"]) == ("j", 0)
        await asyncio.sleep(0.5)
        assert await store.requeue_expired() == 1
        assert await store.claim_next_chunk("fast", ["tiny.en"]) == ("j", 0)
        job = await store.complete_chunk("j", 0, [{"text": "slow"}])  # the lapsed worker finishes first
        assert job.completed_chunks == 1 and job.status == "running"
        assert await raw.zcard(f"{prefix}leases") == 0 and await store.renew_leases("fast") == 0
        job = await store.complete_chunk("j", 0, [{"text": "fast"}])
        assert job.completed_chunks == 1
        assert (await store.chunks("j"))[0].segments == [{"text": "slow"}]
        await store.release_chunk("j", 0)  # a stale release does not requeue a done chunk
        assert await store.claim_next_chunk("fast", ["tiny.en"]) == ("j", 1)
        assert (await store.complete_chunk("j", 1, SEG)).status == "completed"
    finally:
        await store.close()


async def test_release_worker_hands_chunks_back_at_once(store, raw, prefix):
    await _job(store, "a", 2, created=1.0)
    await _job(store, "b", 2, created=2.0)
    assert await store.claim_next_chunk("leaving", ["tiny.en"]) == ("a", 0)
    assert await store.claim_next_chunk("leaving", ["tiny.en"]) == ("b", 0)
    assert await store.claim_next_chunk("staying", ["tiny.en"]) == ("a", 1)
    assert await store.release_worker("leaving") == 2
    assert await store.release_worker("leaving") == 0
    assert await raw.zcard(f"{prefix}leases") == 1
    got = {await store.claim_next_chunk("staying", ["tiny.en"]) for _ in range(2)}
    assert got == {("a", 0), ("b", 0)}
    assert all(c.attempts == 0 for c in await store.chunks("a"))


async def test_release_chunk_on_cancellation(store):
    await _job(store, "j", 2)
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 0)
    await store.release_chunk("j", 0)
    assert (await store.chunks("j"))[0].status == "queued"
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 0)


async def test_renew_with_holding_hands_back_chunks_the_node_lost(redis_server, prefix):
    store = RedisJobStore(redis_server.url, retention_seconds=600, lease_seconds=0.4, key_prefix=prefix)
    try:
        await _job(store, "j", 2)
        assert await store.claim_next_chunk("n", ["tiny.en"]) == ("j", 0)
        assert await store.claim_next_chunk("n", ["tiny.en"]) == ("j", 1)
        assert await store.renew_leases("n", holding=[("j", 0)]) == 2, "young claims are kept"
        await asyncio.sleep(0.5)
        assert await store.renew_leases("n", holding=[("j", 0)]) == 1
        assert [c.status for c in await store.chunks("j")] == ["running", "queued"]
    finally:
        await store.close()


async def test_redelivery_cap_fails_a_chunk_that_keeps_killing_workers(redis_server, raw, prefix):
    store = RedisJobStore(redis_server.url, retention_seconds=600, lease_seconds=0.2, key_prefix=prefix,
                          max_deliveries=3)
    try:
        await _job(store, "j", 2)
        assert await store.claim_next_chunk("w0", ["tiny.en"]) == ("j", 0)
        await store.complete_chunk("j", 0, SEG)
        for n in range(3):
            assert await store.claim_next_chunk(f"w{n}", ["tiny.en"]) == ("j", 1)
            await asyncio.sleep(0.3)  # the worker "crashed": nobody renews
            assert await store.requeue_expired() == 1
        job = await store.get_job("j")
        assert job.status == "failed" and job.error == "chunk 1 crashed its worker repeatedly"
        assert job.failed_chunks == 1 and await raw.pttl(f"{prefix}job:j") > 0
        assert await store.claim_next_chunk("w9", ["tiny.en"]) is None
    finally:
        await store.close()


async def test_memory_budget_refuses_new_jobs(redis_server, prefix):
    store = RedisJobStore(redis_server.url, retention_seconds=600, key_prefix=prefix, memory_budget_bytes=1024)
    try:
        with pytest.raises(StoreFull):
            await _job(store, "j", 2)
        assert await store.get_job("j") is None, "nothing half-written"
    finally:
        await store.close()
    roomy = RedisJobStore(redis_server.url, retention_seconds=600, key_prefix=prefix,
                          memory_budget_bytes=1 << 40)
    try:
        await _job(roomy, "j", 2)
    finally:
        await roomy.close()


async def test_redis_maxmemory_is_reported_as_store_full(tmp_path):
    with start_redis(tmp_path) as server:
        store = RedisJobStore(server.url, retention_seconds=600)
        try:
            used = int((await store.redis.info("memory"))["used_memory"])
            await store.redis.config_set("maxmemory", used + 200_000)
            job = JobRecord(id="big", model="tiny.en", options=JobOptions(), duration=60.0)
            chunks = [ChunkRecord("big", i, 0, 1) for i in range(4)]
            with pytest.raises(StoreFull):
                await store.create_job(job, chunks, [b"\x00" * 1_000_000] * 4)
            assert await store.get_job("big") is None
        finally:
            await store.close()


async def test_diagnose(store, tmp_path):
    report = await store.diagnose()
    assert report["redis_version"].startswith(("6", "7", "8"))
    assert report["maxmemory_policy"] == "noeviction" and report["used_memory"] > 0
    assert not any("eviction" in w or "evict" in w for w in report["warnings"])
    assert any("appendonly" in w for w in report["warnings"])
    with start_redis(tmp_path, appendonly=True, maxmemory_policy="allkeys-lru") as server:
        lru = RedisJobStore(server.url, retention_seconds=600)
        try:
            report = await lru.diagnose()
        finally:
            await lru.close()
    assert report["maxmemory_policy"] == "allkeys-lru" and report["aof_enabled"]
    assert any("allkeys-lru" in w and "noeviction" in w for w in report["warnings"])
    assert not any("appendonly" in w for w in report["warnings"])


async def test_survives_a_redis_restart_with_aof(tmp_path):
    with start_redis(tmp_path, appendonly=True, password="s3cret") as server:
        store = RedisJobStore(server.url, retention_seconds=600, key_prefix="aof:")
        try:
            await _job(store, "j", 3)
            assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 0)
            await store.complete_chunk("j", 0, SEG)
            assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 1)
            await asyncio.to_thread(server.restart)
            # the same store object reconnects by itself; scripts are reloaded after NOSCRIPT
            job = await store.get_job("j")
            assert job is not None and job.status == "running" and job.completed_chunks == 1
            assert (await store.load_chunk("j", 2)).pcm16 == bytes([2, 1]) * 100
            assert await store.renew_leases("w") == 1
            assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 2)
            await store.complete_chunk("j", 1, SEG)
            job = await store.complete_chunk("j", 2, SEG)
            assert job.status == "completed"
            assert [c.segments for c in await store.chunks("j")] == [SEG, SEG, SEG]
        finally:
            await store.close()


async def test_a_command_during_the_restart_waits_for_redis(tmp_path):
    with start_redis(tmp_path, appendonly=True) as server:
        store = RedisJobStore(server.url, retention_seconds=600)
        try:
            await _job(store, "j", 1)
            server.stop()
            restart = asyncio.get_running_loop().run_in_executor(None, lambda: (time.sleep(1.0), server.start()))
            job = await store.get_job("j")  # issued while Redis is down
            await restart
            assert job is not None and job.status == "queued"
        finally:
            await store.close()


# --- node registry --------------------------------------------------------------------------

def _describe(node_id: str) -> dict:
    return {"id": node_id, "name": f"box-{node_id}", "state": "idle", "engine": "faster-whisper",
            "model": "tiny.en", "cores": 2, "load": {"cpu": 1.0, "activeChunks": 0, "queuedChunks": 0},
            "lastSeen": time.time(), "url": f"http://127.0.0.1:1/{node_id}", "protocol": 1}


async def test_registry_publish_expire_remove(redis_server, prefix):
    a = NodeRegistry(redis_server.url, "a", key_prefix=prefix)
    b = NodeRegistry(redis_server.url, "b", key_prefix=prefix)
    c_client = aioredis.Redis.from_url(redis_server.url)
    c = NodeRegistry(c_client, "c", key_prefix=prefix)
    try:
        assert await a.live_nodes() == []
        await a.publish(_describe("a"), ttl=10)
        await b.publish(_describe("b"), ttl=1.0)
        await c.publish(_describe("c"), ttl=10)
        nodes = await a.live_nodes()
        assert [n["id"] for n in nodes] == ["a", "b", "c"]
        assert nodes[0] == _describe("a") | {"lastSeen": nodes[0]["lastSeen"]} and nodes[0]["load"]["cpu"] == 1.0
        # b stops publishing (killed): gone within TTL + 1 s
        started = time.monotonic()
        gone = await _wait_for(lambda: _ids_without(a, "b"), timeout=2.0, step=0.1)
        assert gone and time.monotonic() - started <= 2.0
        await c.remove()  # graceful goodbye: immediate
        assert [n["id"] for n in await a.live_nodes()] == ["a"]
        await b.publish(_describe("b"), ttl=10)  # a restarted node comes back
        assert [n["id"] for n in await a.live_nodes()] == ["a", "b"]
    finally:
        for r in (a, b, c):
            await r.remove()
        await a.close()
        await b.close()
        await c_client.aclose()


async def _ids_without(registry: NodeRegistry, node_id: str) -> bool:
    return node_id not in {n["id"] for n in await registry.live_nodes()}
