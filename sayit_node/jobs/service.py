"""Jobs as the API sees them: submit an upload, watch it, fetch its transcript.

Submission runs the first half of a job's data flow: probe, duration limit, decode, chunk
plan, language (given or detected once), then store the job with its chunk audio in one
transaction and wake the scheduler. Every entry point (OpenAI routes, /api/transcribe, the
CLI) goes through here, so every one of them gets chunked, parallel transcription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import BinaryIO

from .. import audio
from ..engines.base import SAMPLE_RATE, Engine, check_language, check_task
from .admission import QueueFull, QueuedAudio
from .records import TERMINAL, ChunkRecord, JobOptions, JobRecord, new_job_id
from .store import JobStore, StoreFull
from .transcript import Transcript, diarize_transcript, stitch
from .worker import SpeedMeter, chunk_factor

log = logging.getLogger(__name__)


@dataclass
class AudioTooLong(Exception):
    duration: float  # seconds (at least)
    limit: float  # seconds


class DiskLow(Exception):
    pass


class JobService:
    def __init__(self, store: JobStore, engine: Engine, *, max_duration: float, data_dir, min_free_bytes: int,
                 default_language: str | None, beam_size: int, speed: SpeedMeter,
                 on_submitted: Callable[[], None] = lambda: None, queued: QueuedAudio | None = None,
                 engine_executor: Executor | None = None, parallel_decodes: int = 2) -> None:
        self.store = store
        # Audio accepted and not finished, bounded per node and per client (no bound by default).
        self.queued = queued or QueuedAudio(math.inf, math.inf, speed.speed)
        self.engine_executor = engine_executor  # None: the default pool
        self._decoding = asyncio.Semaphore(max(1, parallel_decodes))
        self.engine = engine
        self.max_duration = max_duration
        self.data_dir = data_dir
        self.min_free_bytes = min_free_bytes
        self.default_language = default_language
        self.beam_size = beam_size
        self.speed = speed
        self._diarized: dict[str, tuple] = {}  # job id -> (stitched count, segments, seeks, speakers, ...)
        self.on_submitted = on_submitted
        self.live_models: Callable[[], Awaitable[set[str]]] | None = None  # set by a federated node
        # Requests waiting on a job, woken when a chunk on this node ends it (job_ended); a job
        # ended elsewhere (another node, a cancel) is seen by their polling.
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    def check_disk(self) -> None:
        """Refuse new work while the data directory is nearly full."""
        if shutil.disk_usage(self.data_dir).free < self.min_free_bytes:
            raise DiskLow()

    def check_language(self, language: str | None) -> None:
        check_language(self.engine, language)

    async def submit(self, source: BinaryIO | str, *, filename: str, options: JobOptions,
                     client: str = "local") -> JobRecord:
        self.check_disk()
        if options.language is None:
            options.language = self.default_language
        self.check_language(options.language)
        check_task(self.engine, options.task)
        # Decoding holds a whole recording in memory and a thread of the default pool (which
        # SQLite uses too): a few at a time, the rest wait their turn.
        async with self._decoding:
            duration = await asyncio.to_thread(audio.probe_duration, source)
            if duration is not None and duration > self.max_duration + 0.5:
                raise AudioTooLong(duration, self.max_duration)
            # Refused before decoding when the header tells the length (else after).
            held = None if duration is None else await self.queued.reserve(self.store, client, duration)
            try:
                job = await self._decode_and_store(source, filename, options, held, client)
            except BaseException:
                if held is not None:
                    self.queued.release(held)
                raise
        self.on_submitted()
        return job

    async def _decode_and_store(self, source, filename: str, options: JobOptions, held: int | None,
                                client: str) -> JobRecord:
        try:
            samples = await asyncio.to_thread(audio.decode, source, max_seconds=self.max_duration)
        except audio.AudioError as exc:
            if exc.code == "audio_too_long":
                raise AudioTooLong(self.max_duration, self.max_duration) from exc
            raise
        duration = len(samples) / SAMPLE_RATE
        if duration > self.max_duration + 0.5:
            raise AudioTooLong(duration, self.max_duration)
        if held is None:
            held = await self.queued.reserve(self.store, client, duration)
        try:
            plan = await asyncio.to_thread(audio.plan_chunks, samples,
                                           parts=getattr(self.engine, "parallel_chunks", 1))
            language = options.language
            if language is None and plan:
                # Up to 30 s from the first speech, across chunk cuts (a chunk may be 5 s).
                first = samples[plan[0].start : plan[0].start + 30 * SAMPLE_RATE]
                loop = asyncio.get_running_loop()
                language, probability = await loop.run_in_executor(self.engine_executor, self.engine.detect_language,
                                                                   first)
                log.info("detected language %s (p=%.2f) for %s", language, probability, filename)
            job = JobRecord(id=new_job_id(), model=self.model_name, options=options, duration=duration,
                            filename=filename, language=language or "en", total_chunks=len(plan))
            chunks = [ChunkRecord(job.id, c.index, c.start, c.end) for c in plan]
            pcm = [audio.to_pcm16(samples[c.start : c.end]) for c in plan]
            del samples
            await self.store.create_job(job, chunks, pcm)
        except BaseException:
            self.queued.release(held)
            raise
        if chunks:
            self.queued.bind(held, job.id)
        else:  # silence: done at once
            self.queued.release(held)
        log.info("job %s: %s, %.1f s of audio in %d chunks", job.id, filename, duration, len(chunks))
        return job

    def job_ended(self, job_id: str) -> None:
        """Wake the requests waiting on this job at once (a short job's answer would otherwise
        wait for the next poll: 0.1 s of a 0.4 s request)."""
        for event in self._waiters.get(job_id, ()):
            event.set()

    @contextlib.contextmanager
    def _wake_on_end(self, job_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(job_id, None)

    @staticmethod
    async def _pause(woken: asyncio.Event, poll: float) -> None:
        """Until the job ends on this node or `poll` seconds pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), poll)
        woken.clear()

    async def wait(self, job_id: str, poll: float = 0.1) -> JobRecord | None:
        """Wait until the job is completed, failed or cancelled (None if it vanished)."""
        with self._wake_on_end(job_id) as woken:
            while True:
                job = await self.store.get_job(job_id)
                if job is None or job.status in TERMINAL:
                    return job
                await self._pause(woken, poll)

    async def watch(self, job_id: str, poll: float = 0.25) -> AsyncIterator[JobRecord]:
        """Yield the job each time its progress or status changes, ending at a terminal state."""
        last = None
        with self._wake_on_end(job_id) as woken:
            while True:
                job = await self.store.get_job(job_id)
                if job is None:
                    return
                key = (job.status, job.completed_chunks, job.failed_chunks)
                if key != last:
                    last = key
                    yield job
                if job.status in TERMINAL:
                    return
                await self._pause(woken, poll)

    async def transcript(self, job: JobRecord, *, prefix_only: bool = False) -> Transcript:
        chunks = await self.store.chunks(job.id)
        t = stitch(chunks, language=job.language, duration=job.duration, task=job.options.task,
                   prefix_only=prefix_only)
        if job.options.diarize and not prefix_only and job.status == "completed":
            # Clustering runs once per finished job on this node (cached): it is deterministic
            # from the stored windows, so every node labels a job the same way.
            # The cache holds the labelled segments (split at speaker changes) and is keyed
            # by the stitched segment count as well.
            cached = self._diarized.get(job.id)
            if cached is None or cached[0] != len(t.segments):
                o = job.options
                stitched = len(t.segments)
                await asyncio.to_thread(diarize_transcript, t, speakers=o.speakers, min_speakers=o.min_speakers,
                                        max_speakers=o.max_speakers)
                self._diarized[job.id] = (stitched, t.segments, t.seeks, t.speakers, t.word_speakers,
                                          t.speaker_count)
                while len(self._diarized) > 64:
                    self._diarized.pop(next(iter(self._diarized)))
            else:
                _, segments, seeks, speakers, word_speakers, t.speaker_count = cached
                t.segments, t.seeks, t.speakers, t.word_speakers = (list(segments), list(seeks), list(speakers),
                                                                    [list(w) for w in word_speakers])
        return t

    def estimate_seconds(self, chunks: int, audio_seconds: float) -> float:
        """Wall seconds for `chunks` chunks (`audio_seconds` of audio) at the node's calibrated
        window cost (see SpeedMeter: overhead + rounds of one window per model worker)."""
        if chunks <= 0:
            return 0.0
        return max(0.1, round(self.speed.estimate(chunks, audio_seconds), 1))

    def job_eta(self, job: JobRecord, chunks: list[ChunkRecord], now: float | None = None) -> float:
        """Seconds until an active job ends: the calibrated window cost until its first chunks
        are done, then blended with the cost per round this job itself shows, minus the time
        spent since."""
        now = time.time() if now is None else now
        speed = self.speed
        done = [c for c in chunks if c.status == "done"]
        left = len(chunks) - len(done)
        left_audio = sum(c.duration for c in chunks if c.status != "done")
        if left <= 0:
            return 0.1
        if job.started_at is None:
            return self.estimate_seconds(left, left_audio)
        elapsed = max(0.0, now - job.started_at)
        cost = speed.window_cost()
        if done:
            # The job's own cost per round so far, weighted with the calibrated one by how much
            # of the job it has seen.
            last_done = max((c.finished_at or 0.0) for c in done)
            done_audio = sum(c.duration for c in done)
            own = max(1e-3, (last_done or now) - job.started_at) / (
                speed.rounds(len(done)) * chunk_factor(done_audio / len(done)))
            seen = len(done) / len(chunks)
            cost = own**seen * cost ** (1 - seen)
            since = max(0.0, now - last_done) if last_done else 0.0
            estimate = speed.rounds(left) * cost * chunk_factor(left_audio / left)
        else:
            since = elapsed
            estimate = speed.estimate(left, left_audio)
        return round(max(0.1, estimate - since, 0.1 * estimate), 1)

    async def status(self, job: JobRecord, *, partial: bool = True) -> dict:
        """The job as `GET /api/jobs/{id}` shows it (durations in seconds)."""
        active = job.status in ("queued", "running")
        # Chunk records (with their results) are read only when the view needs them: the job
        # list, polled every second by the tray, mostly shows finished jobs.
        chunks = await self.store.chunks(job.id) if active or partial else []
        partial_text = None
        if partial:
            partial_text = stitch(chunks, language=job.language, duration=job.duration, prefix_only=True).text
        eta = None
        processed = job.duration if job.status == "completed" else 0.0
        if active:
            # The chunk list may be a moment newer than `job`: an active job never shows 0.
            eta = self.job_eta(job, chunks)
            processed = min(job.duration, sum(c.duration for c in chunks if c.status == "done"))
        elif job.status == "completed":
            eta = 0.0
        warning = None
        if active and self.live_models is not None:
            if job.model not in await self.live_models():
                warning = f"no live node serves model '{job.model}'; the job waits until one does"
        return {
            "jobId": job.id,
            "status": job.status,
            "progress": job.progress,
            "completedChunks": job.completed_chunks,
            "totalChunks": job.total_chunks,
            "failedChunks": job.failed_chunks,
            "etaSeconds": eta,
            "processedSeconds": round(processed, 3),
            "language": job.language,
            "duration": round(job.duration, 3),
            "model": job.model,
            "filename": job.filename,
            "partialText": partial_text,
            "error": job.error,
            "warning": warning,
            "createdAt": job.created_at,
            "startedAt": job.started_at,
            "finishedAt": job.finished_at,
            "diarize": job.options.diarize,
        }


__all__ = ["AudioTooLong", "DiskLow", "JobService", "QueueFull", "StoreFull"]
