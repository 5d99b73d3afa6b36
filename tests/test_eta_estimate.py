"""The first estimate counts windows per model worker, not audio seconds (no node, no model)."""

from __future__ import annotations

import json

import pytest

from sayit_node.jobs.records import ChunkRecord, JobOptions, JobRecord
from sayit_node.jobs.service import JobService
from sayit_node.jobs.worker import JOB_OVERHEAD, WARMUP_SPEECH_FACTOR, SpeedMeter, chunk_factor


def _service(speed: SpeedMeter) -> JobService:
    service = JobService.__new__(JobService)  # job_eta / estimate_seconds read only the speed
    service.speed = speed
    return service


def _chunks(job_id: str, seconds: list[float]) -> list[ChunkRecord]:
    out, at = [], 0
    for i, s in enumerate(seconds):
        out.append(ChunkRecord(job_id, i, at, at + int(s * 16_000)))
        at += int(s * 16_000)
    return out


def test_one_chunk_is_one_window_on_one_worker_plus_overhead():
    speed = SpeedMeter(workers=2)
    speed.record_warmup(2, 1.0)  # two silent windows at once in 1 s: each worker's window ~1 s
    window = WARMUP_SPEECH_FACTOR * 1.0
    service = _service(speed)
    # A 25 s one-chunk job: one window on one worker (audio seconds / both workers' throughput
    # said 25 / (60 / 1.6) = 0.7 s).
    assert service.estimate_seconds(1, 25.0) == pytest.approx(JOB_OVERHEAD + window, abs=0.06)
    # 8 chunks over 2 workers: 4 rounds; 3 chunks: 2 rounds.
    assert service.estimate_seconds(8, 200.0) == pytest.approx(JOB_OVERHEAD + 4 * window, abs=0.06)
    assert service.estimate_seconds(3, 75.0) == pytest.approx(JOB_OVERHEAD + 2 * window, abs=0.06)
    assert service.estimate_seconds(0, 0.0) == 0.0
    speed.workers = 1
    assert service.estimate_seconds(3, 75.0) == pytest.approx(JOB_OVERHEAD + 3 * window, abs=0.06)
    # A shorter chunk's window costs less (the decoder's share), but more than its audio share.
    short = service.estimate_seconds(1, 10.0)
    assert JOB_OVERHEAD + 0.4 * window < short < JOB_OVERHEAD + 0.8 * window
    assert chunk_factor(25.0) == pytest.approx(1.0)


def test_whole_jobs_calibrate_the_window_cost_and_it_is_kept(tmp_path):
    path = tmp_path / "engine_speed.json"
    speed = SpeedMeter(workers=2)
    speed.load_calibration(path, "k")
    speed.record_warmup(2, 1.0)
    speed.record_job(350.0, JOB_OVERHEAD + 7 * 1.2, 14)  # 14 chunks of 25 s, 2 workers: 7 rounds of 1.2 s
    assert speed.window_cost() == pytest.approx(1.2)
    kept = json.loads(path.read_text())
    assert kept["k|window"] == pytest.approx(1.2) and kept["k"] == pytest.approx(350.0 / (JOB_OVERHEAD + 8.4), rel=1e-3)
    again = SpeedMeter(workers=2)
    again.load_calibration(path, "k")
    assert again.window_cost() == pytest.approx(1.2) and again.estimate(2, 50.0) == pytest.approx(JOB_OVERHEAD + 1.2)


def test_eta_refined_from_finished_chunks():
    speed = SpeedMeter(workers=2)
    speed.record_warmup(2, 1.0)  # calibrated: 1.6 s per window
    service = _service(speed)
    job = JobRecord(id="j", model="tiny.en", options=JobOptions(), duration=100.0, filename="f", language="en")
    chunks = _chunks("j", [25.0] * 4)
    assert service.job_eta(job, chunks, now=0.0) == pytest.approx(JOB_OVERHEAD + 2 * 1.6, abs=0.06)
    job.started_at = 100.0
    # The first round took 4 s, not 1.6: the last round is estimated slower than calibrated.
    for c in chunks[:2]:
        c.status, c.finished_at = "done", 104.0
    eta = service.job_eta(job, chunks, now=104.0)
    assert 1.6 < eta < 4.0
    assert service.job_eta(job, chunks, now=105.0) == pytest.approx(eta - 1.0, abs=0.06)


def test_a_long_job_after_short_ones_is_not_estimated_below_the_audio_rate_of_whole_jobs():
    """Short jobs (one batched round each) calibrate a low window cost; a 6-minute job also waits
    for resumed windows and the worker with the last batch. Its first estimate is at least its
    audio at the rate whole jobs ran (bench/speed.py measured 0.52-0.71x by windows alone);
    short jobs keep their window estimate, which counts their fixed costs."""
    speed = SpeedMeter(workers=2)
    speed.record_warmup(2, 1.0)
    for _ in range(5):  # as measured with tiny.en on 2 cores: a 2-chunk file, a 4-chunk one, JFK
        speed.record_job(52.4, 1.75, 2)
        speed.record_job(67.7, 1.6, 4)
        speed.record_job(11.0, 0.48, 2)
    by_windows = JOB_OVERHEAD + 7 * speed.window_cost() * chunk_factor(353.6 / 14)
    long_job = speed.estimate(14, 353.6)
    assert long_job == pytest.approx(353.6 / speed.rate()) and long_job > 1.3 * by_windows
    assert 8.0 < long_job < 14.0  # it took 9.1-11.2 s
    short_job = speed.estimate(2, 11.0)
    assert short_job > 11.0 / speed.rate() and short_job == pytest.approx(
        JOB_OVERHEAD + speed.window_cost() * chunk_factor(5.5))
