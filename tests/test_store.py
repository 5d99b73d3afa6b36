"""The SQLite job store: fairness, idempotence, retries, cancel, recovery, retention."""

from __future__ import annotations

import time

import pytest

from sayit_node.jobs.records import ChunkRecord, JobOptions, JobRecord
from sayit_node.jobs.sqlite_store import SqliteJobStore

pytestmark = pytest.mark.asyncio(loop_scope="function")


@pytest.fixture
async def store(tmp_path):
    store = SqliteJobStore(tmp_path / "sayit.db")
    yield store
    await store.close()


async def _job(store, job_id: str, chunks: int, created: float | None = None) -> JobRecord:
    job = JobRecord(id=job_id, model="tiny.en", options=JobOptions(), duration=chunks * 10.0, language="en",
                    created_at=created or time.time())
    records = [ChunkRecord(job_id, i, i * 160000, (i + 1) * 160000) for i in range(chunks)]
    await store.create_job(job, records, [b"\x00\x01" * 100] * chunks)
    return job


async def test_claims_round_robin_across_jobs(store):
    await _job(store, "long", 10, created=1.0)
    await _job(store, "short", 2, created=2.0)
    claims = [await store.claim_next_chunk("w", ["tiny.en"]) for _ in range(4)]
    assert claims == [("long", 0), ("short", 0), ("long", 1), ("short", 1)]


async def test_only_jobs_of_served_models_are_claimed(store):
    await _job(store, "a", 1)
    assert await store.claim_next_chunk("w", ["base"]) is None
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("a", 0)


async def test_complete_is_idempotent_and_finishes_the_job(store):
    await _job(store, "j", 2)
    await store.claim_next_chunk("w", ["tiny.en"])
    seg = [{"start": 0.0, "end": 1.0, "text": " hi", "tokens": [1], "temperature": 0.0, "avg_logprob": -0.1,
            "compression_ratio": 1.0, "no_speech_prob": 0.0, "words": None}]
    job = await store.complete_chunk("j", 0, seg)
    job = await store.complete_chunk("j", 0, seg)  # a chunk that runs twice does no harm
    assert job.status == "running" and job.completed_chunks == 1
    job = await store.complete_chunk("j", 1, seg)
    assert job.status == "completed" and job.completed_chunks == 2 and job.finished_at
    assert await store.load_chunk("j", 0) is None, "audio is gone once the job is done"


async def test_three_failures_fail_the_job_with_the_reason(store):
    await _job(store, "j", 2)
    job = await store.fail_chunk("j", 1, "boom")
    assert job.status in ("queued", "running")
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 0), "the failed chunk waits for its backoff"
    job = await store.fail_chunk("j", 1, "boom")
    assert job.status != "failed"
    job = await store.fail_chunk("j", 1, "boom again")
    assert job.status == "failed" and "boom again" in job.error and job.failed_chunks == 1


async def test_cancel_deletes_audio_and_results(store):
    await _job(store, "j", 3)
    await store.claim_next_chunk("w", ["tiny.en"])
    job = await store.cancel_job("j")
    assert job.status == "cancelled"
    assert await store.load_chunk("j", 1) is None
    assert await store.claim_next_chunk("w", ["tiny.en"]) is None
    assert (await store.get_job("j")).status == "cancelled"


async def test_delete_removes_a_completed_transcript(store):
    await _job(store, "j", 1)
    await store.claim_next_chunk("w", ["tiny.en"])
    finished = await store.complete_chunk("j", 0, [{"text": "secret"}])
    assert finished.status == "completed"
    job = await store.cancel_job("j")
    assert job.status == "cancelled" and job.finished_at == finished.finished_at
    assert (await store.chunks("j"))[0].segments is None


async def test_requeue_running_after_restart(store, tmp_path):
    await _job(store, "j", 2)
    assert await store.claim_next_chunk("w", ["tiny.en"]) == ("j", 0)
    await store.close()
    reopened = SqliteJobStore(tmp_path / "sayit.db")
    try:
        assert await reopened.requeue_running() == 1
        assert await reopened.claim_next_chunk("w", ["tiny.en"]) == ("j", 0)
    finally:
        await reopened.close()


async def test_retention_deletes_only_old_finished_jobs(store):
    await _job(store, "old", 1)
    await _job(store, "running", 1)
    await store.cancel_job("old")
    assert await store.delete_finished_before(time.time() - 3600) == 0
    assert await store.delete_finished_before(time.time() + 1) == 1
    assert await store.get_job("old") is None and await store.get_job("running") is not None


async def test_empty_plan_completes_at_once(store):
    job = await _job(store, "silence", 0)
    assert (await store.get_job(job.id)).status == "completed"


# --- waiting on a job: woken when this node ends it, polling for the rest ----------------------

async def test_a_waiting_request_wakes_when_a_chunk_on_this_node_ends_the_job(store, tmp_path):
    """A synchronous request waits on its job. The chunk worker that finishes the job wakes it
    at once (as the node wires on_job_end to JobService.job_ended); with a 60 s poll, only the
    wake can end this wait within 10 s."""
    import asyncio

    from sayit_node.engines.simulated import SimulatedEngine
    from sayit_node.jobs.service import JobService
    from sayit_node.jobs.worker import ChunkWorker, SpeedMeter

    engine = SimulatedEngine("tiny.en", 0.0)
    service = JobService(store, engine, max_duration=600, data_dir=tmp_path, min_free_bytes=0,
                         default_language="en", beam_size=5, speed=SpeedMeter())
    worker = ChunkWorker(store, engine, "w", on_job_end=lambda job: service.job_ended(job.id))
    job = await _job(store, "j", 2)
    waiting = asyncio.create_task(service.wait(job.id, poll=60))
    watched = []

    async def watch():
        async for record in service.watch(job.id, poll=60):
            watched.append(record.status)

    watching = asyncio.create_task(watch())
    await asyncio.sleep(0.1)  # both have read the job as queued and sleep on their poll
    assert not waiting.done() and watched == ["queued"]
    while (claim := await store.claim_next_chunk("w", ["tiny.en"])) is not None:
        await worker.run_chunk(*claim)
    finished = await asyncio.wait_for(waiting, 10)
    await asyncio.wait_for(watching, 10)
    assert finished.status == "completed" and watched[-1] == "completed"
    assert service._waiters == {}  # nothing kept for a job nobody waits on


async def test_a_job_ended_elsewhere_is_still_seen_by_polling(store, tmp_path):
    """Another node (or a cancel) ends the job: no wake here, the poll still sees it."""
    import asyncio

    from sayit_node.engines.simulated import SimulatedEngine
    from sayit_node.jobs.service import JobService
    from sayit_node.jobs.worker import SpeedMeter

    service = JobService(store, SimulatedEngine("tiny.en", 0.0), max_duration=600, data_dir=tmp_path,
                         min_free_bytes=0, default_language="en", beam_size=5, speed=SpeedMeter())
    job = await _job(store, "j", 1)
    waiting = asyncio.create_task(service.wait(job.id, poll=0.05))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await store.cancel_job(job.id)
    assert (await asyncio.wait_for(waiting, 10)).status == "cancelled"
