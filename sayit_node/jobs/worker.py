"""Running one chunk: load its audio from the store, transcribe, save the result.

`transcribe_chunk` is the taskiq task; its message carries only (job id, chunk index).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from pathlib import Path
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from taskiq import AsyncBroker, TaskiqDepends, TaskiqState

from ..audio import from_pcm16
from ..diarize import pack_windows
from ..engines.base import SAMPLE_RATE, Engine, EngineError, TranscribeOptions
from ..queue import CHUNK_TASK_NAME
from .store import CorruptChunk, JobStore

RELEASE_TIMEOUT = 3.0  # seconds to hand a chunk back when the node stops

log = logging.getLogger(__name__)


@dataclass
class SpeedMeter:
    """Recent throughput in audio seconds per wall second, over a sliding window, and the
    calibration estimates are made from.

    Estimates count windows, not only audio seconds: every chunk is decoded as one 30 s window,
    and the engine's model workers (`workers`) each take one at a time, so a job of n chunks
    costs JOB_OVERHEAD + ceil(n / workers) rounds x the cost of one window on one worker. A
    window's cost still grows with the speech in it (the decoder; a 10.6 s chunk cost ~0.6x a
    25 s one), so it is scaled by `chunk_factor` of the chunks' mean length. The estimate is
    never below the job's audio at `rate()`, which long jobs need (see `estimate`).
    That window cost (for 25 s of speech), best first: measured on whole jobs this engine
    finished (a moving average kept in the data directory across restarts, per
    engine/model/device/batch/cores), else the warm-up at start (a silent 30 s window on each
    worker at once, scaled by WARMUP_SPEECH_FACTOR), else a fixed guess. `rate()` (audio s per
    wall s, also for Retry-After) is calibrated the same way from whole jobs.
    """

    window: float = 60.0
    _events: deque = field(default_factory=deque)  # (finished_at, audio_seconds, busy_seconds)
    total_audio_seconds: float = 0.0
    total_chunks: int = 0
    workers: int = 1  # chunks the engine decodes at once (model workers)
    warmup_rate: float = 0.0  # audio s per wall s, from the warm-up
    warmup_window: float = 0.0  # wall s of one speech window on one worker, from the warm-up
    job_rate: float = 0.0  # audio s per wall s of whole jobs (moving average)
    job_window: float = 0.0  # wall s of one window on one worker, from whole jobs (moving average)
    calibration_file: Path | None = None
    calibration_key: str = ""

    def record(self, audio_seconds: float, busy_seconds: float) -> None:
        now = time.monotonic()
        self._events.append((now, audio_seconds, busy_seconds))
        self.total_audio_seconds += audio_seconds
        self.total_chunks += 1
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window:
            self._events.popleft()

    def speed(self) -> float:
        """Audio seconds per wall second over the window (0 when idle all window)."""
        now = time.monotonic()
        self._trim(now)
        if not self._events:
            return 0.0
        first_start = min(t - busy for t, _, busy in self._events)
        span = max(now - first_start, 1e-3)
        return sum(a for _, a, _ in self._events) / min(span, self.window)

    # -- calibration ----------------------------------------------------------------------------
    def rate(self) -> float:
        """Best estimate of this node's speed on a job (audio s per wall s)."""
        return self.job_rate or self.warmup_rate or INITIAL_SPEED_GUESS

    def window_cost(self) -> float:
        """Best estimate of the wall seconds one speech window takes on one model worker."""
        return self.job_window or self.warmup_window or INITIAL_WINDOW_GUESS

    def rounds(self, chunks: int) -> int:
        """Rounds of windows `chunks` chunks take: each worker decodes one at a time."""
        return math.ceil(chunks / max(1, self.workers)) if chunks > 0 else 0

    def estimate(self, chunks: int, audio_seconds: float) -> float:
        """Wall seconds for `chunks` chunks holding `audio_seconds` of audio, from when the
        first is claimed."""
        if chunks <= 0:
            return 0.0
        by_windows = JOB_OVERHEAD + self.rounds(chunks) * self.window_cost() * chunk_factor(audio_seconds / chunks)
        # Never faster than whole jobs ran here: a long job also waits for its resumed windows
        # and for the worker with the last batch, which the windows of short jobs (the usual
        # calibration: one batched round) don't show. First estimate / real for a 6-minute
        # file after jobs of 0.2-1 min: 0.52-0.71x by windows alone (bench/speed.py).
        return max(by_windows, audio_seconds / self.rate())

    def record_warmup(self, windows: int, wall_seconds: float) -> None:
        """`windows` silent 30 s windows, one per worker at once, took `wall_seconds`."""
        self.warmup_rate = WARMUP_SECONDS * windows / max(wall_seconds * WARMUP_SPEECH_FACTOR, 1e-3)
        self.warmup_window = max(wall_seconds * WARMUP_SPEECH_FACTOR, 1e-3)

    def record_job(self, audio_seconds: float, wall_seconds: float, chunks: int = 0) -> None:
        """A job finished: `audio_seconds` in `chunks` chunks took `wall_seconds` from its first
        chunk to its last."""
        if wall_seconds <= 0:
            return
        if chunks > 0:
            rounds = self.rounds(chunks) * chunk_factor(audio_seconds / chunks)
            window = max(wall_seconds - JOB_OVERHEAD, 0.05 * wall_seconds) / rounds
            self.job_window = window if not self.job_window else 0.7 * self.job_window + 0.3 * window
        if audio_seconds >= 5:  # shorter: fixed costs dominate the rate
            rate = audio_seconds / wall_seconds
            self.job_rate = rate if not self.job_rate else 0.7 * self.job_rate + 0.3 * rate
        self._save()

    def load_calibration(self, path: Path, key: str) -> None:
        self.calibration_file, self.calibration_key = path, key
        try:
            data = json.loads(path.read_text())
            rate, window = float(data.get(key, 0.0)), float(data.get(key + WINDOW_KEY, 0.0))
        except (OSError, ValueError, TypeError, AttributeError):
            return
        if 0 < rate < 1e5:
            self.job_rate = rate
        if 0 < window < 1e4:
            self.job_window = window

    def _save(self) -> None:
        if self.calibration_file is None:
            return
        try:
            try:
                data = json.loads(self.calibration_file.read_text())
                data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                data = {}
            if self.job_rate:
                data[self.calibration_key] = round(self.job_rate, 3)
            if self.job_window:
                data[self.calibration_key + WINDOW_KEY] = round(self.job_window, 3)
            tmp = self.calibration_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.calibration_file)
        except OSError as exc:
            log.debug("cannot keep the speed calibration: %s", exc)


# Speed assumed before anything was measured (audio s per wall s), and the window cost.
INITIAL_SPEED_GUESS = 10.0
INITIAL_WINDOW_GUESS = 3.0
# A round of ~25 s speech chunks cost ~1.45x the warm-up's silent 30 s windows with tiny.en and
# 1.55-1.7x with base (int8, beam 5, 2 one-thread workers on 2 cores; bench/eta.py).
WARMUP_SPEECH_FACTOR = 1.6
WARMUP_SECONDS = 30.0
# Per job, besides its windows: claiming the first chunk, stitching, the status write (decode
# and VAD, 0.2 s for 11 s to 0.9 s for 354 s of audio here, are done before the estimate is
# given). ~0.1 s measured (bench/eta.py: time after the 202 minus the windows).
JOB_OVERHEAD = 0.1
WINDOW_KEY = "|window"


def chunk_factor(chunk_seconds: float) -> float:
    """A window's cost for a chunk this long, relative to a 25 s one: the encoder's fixed share
    plus the decoder's, which grows with the speech (fit on tiny.en/base: a 10.6 s chunk
    cost 0.58-0.67x a 21-25 s one)."""
    return 0.35 + 0.65 * min(max(chunk_seconds, 0.0), 30.0) / 25.0  # calibration file: the window cost's key is the speed's key + this


@dataclass
class ChunkWorker:
    """What the chunk task needs: the store, the engine, and who to tell when a chunk ends."""

    store: JobStore
    engine: Engine
    worker_id: str
    speed: SpeedMeter = field(default_factory=SpeedMeter)
    on_job_end: Callable[[object], None] | None = None
    on_chunk_done: Callable[[float, float], None] | None = None  # (audio seconds, wall seconds)
    executor: Executor | None = None  # where the engine runs (None: the default pool)
    # Diarization: returns the node's speaker embedder (loaded on first use; may raise
    # ModelNotAvailable, which fails the chunk like an engine error).
    speaker_model: Callable[[], object] | None = None
    _running: set[asyncio.Task] = field(default_factory=set)

    @property
    def active(self) -> int:
        return len(self._running)

    async def run_chunk(self, job_id: str, index: int) -> None:
        task = asyncio.current_task()
        self._running.add(task)
        try:
            await self._run(job_id, index)
        except asyncio.CancelledError:
            # The node is stopping (cancel_all); the chunk was handed back. Ending quietly keeps
            # taskiq from logging the cancellation as a failed task with a traceback.
            log.info("chunk %s/%d stopped with the node", job_id, index)
        finally:
            self._running.discard(task)

    async def cancel_all(self) -> None:
        """Stop every running chunk; each hands its chunk back to the queue as it ends."""
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _run(self, job_id: str, index: int) -> None:
        try:
            work = await self.store.load_chunk(job_id, index)
            if work is None:  # cancelled, finished or deleted meanwhile
                return
            samples = from_pcm16(work.pcm16)
        except (CorruptChunk, ValueError) as exc:
            # Bad options or audio in the store: a failed attempt (the job fails on the third),
            # never a chunk that goes round the queue forever.
            log.warning("chunk %s/%d is unusable: %s", job_id, index, exc)
            await self._record(self.store.fail_chunk(job_id, index, f"unusable chunk: {exc}"), job_id, index)
            return
        except Exception as exc:  # the store is unreachable: the lease runs out and the chunk reruns
            self._store_unreachable("load it", job_id, index, exc)
            return
        options = TranscribeOptions(
            language=work.language,
            task=work.options.task,
            beam_size=work.options.beam_size,
            temperature=work.options.temperature,
            prompt=work.options.prompt,
            word_timestamps=work.options.word_timestamps,
        )
        started = time.monotonic()
        try:
            # The engine's own threads: a busy engine never starves the default pool (decode, SQLite).
            loop = asyncio.get_running_loop()
            segments = await loop.run_in_executor(self.executor, self.engine.transcribe, samples, options)
            result = [s.to_dict() for s in segments]
            if work.options.diarize:
                # Same pool as the engine; sayit_node.cpu keeps onnxruntime and CTranslate2 within the cores.
                windows = await loop.run_in_executor(self.executor, self._speaker_windows, samples)
                result.append(pack_windows(windows))
        except asyncio.CancelledError:
            try:  # bounded: a node stopping while the store is unreachable must not hang here
                await asyncio.wait_for(self.store.release_chunk(job_id, index), RELEASE_TIMEOUT)
            except Exception as exc:
                self._store_unreachable("hand it back", job_id, index, exc)
            raise
        except Exception as exc:  # the engine failed on this chunk: retry, then fail the job
            reason = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            log.warning("chunk %s/%d failed: %s", job_id, index, reason)
            job = await self._record(self.store.fail_chunk(job_id, index, reason), job_id, index)
        else:
            busy = time.monotonic() - started
            self.speed.record(len(samples) / SAMPLE_RATE, busy)
            if self.on_chunk_done:
                self.on_chunk_done(len(samples) / SAMPLE_RATE, busy)
            job = await self._record(self.store.complete_chunk(job_id, index, result), job_id, index)
            log.debug("chunk %s/%d done in %.2fs (%d segments)", job_id, index, busy, len(segments))
        if job is not None and job.status in ("completed", "failed") and self.on_job_end:
            self.on_job_end(job)

    async def _record(self, call, job_id: str, index: int):
        """Save a chunk's outcome; if the store is unreachable (the cluster's Redis is gone past
        its retries) the chunk stays leased to us, its lease runs out and it reruns."""
        try:
            return await call
        except Exception as exc:
            self._store_unreachable("record its result", job_id, index, exc)
            return None

    @staticmethod
    def _store_unreachable(what: str, job_id: str, index: int, exc: BaseException) -> None:
        detail = str(exc).splitlines()[0][:200] if str(exc) else "no answer in time"
        log.warning("chunk %s/%d: could not %s, the job store did not answer (%s: %s); it reruns when its "
                    "lease runs out", job_id, index, what, type(exc).__name__, detail)

    def _speaker_windows(self, samples):
        if self.speaker_model is None:
            raise EngineError("this node has no speaker model for diarization")
        embedder = self.speaker_model()
        return embedder.embed_speech(samples)


async def transcribe_chunk(job_id: str, chunk_index: int, state: TaskiqState = TaskiqDepends()) -> None:
    """The taskiq task: run one chunk on this node's ChunkWorker."""
    await state.chunk_worker.run_chunk(job_id, chunk_index)


def register_tasks(broker: AsyncBroker, worker: ChunkWorker):
    """Register the chunk task on `broker` and give it this node's worker. Returns the task."""
    broker.state.chunk_worker = worker
    return broker.register_task(transcribe_chunk, task_name=CHUNK_TASK_NAME)
