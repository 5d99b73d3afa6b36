"""Running one chunk: load its audio from the store, transcribe, save the result.

`transcribe_chunk` is the taskiq task; its message carries only (job id, chunk index).
"""

from __future__ import annotations

import asyncio
import json
import logging
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
    calibrated speed estimates are made from.

    Calibration, best first: the speed of whole jobs this engine finished (an average kept in
    the data directory across restarts, per engine/model/device/batch/cores), else the warm-up
    at start (a silent 30 s window, scaled by WARMUP_SPEECH_FACTOR), else a fixed guess.
    """

    window: float = 60.0
    _events: deque = field(default_factory=deque)  # (finished_at, audio_seconds, busy_seconds)
    total_audio_seconds: float = 0.0
    total_chunks: int = 0
    warmup_rate: float = 0.0  # audio s per wall s, from the warm-up
    job_rate: float = 0.0  # audio s per wall s of whole jobs (moving average)
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

    def record_warmup(self, window_seconds: float, wall_seconds: float) -> None:
        self.warmup_rate = window_seconds / max(wall_seconds * WARMUP_SPEECH_FACTOR, 1e-3)

    def record_job(self, audio_seconds: float, wall_seconds: float) -> None:
        """A job finished: `audio_seconds` took `wall_seconds` from its first chunk to its last."""
        if audio_seconds < 5 or wall_seconds <= 0:
            return  # too short to say much (fixed costs dominate)
        rate = audio_seconds / wall_seconds
        self.job_rate = rate if not self.job_rate else 0.7 * self.job_rate + 0.3 * rate
        self._save()

    def load_calibration(self, path: Path, key: str) -> None:
        self.calibration_file, self.calibration_key = path, key
        try:
            value = float(json.loads(path.read_text()).get(key, 0.0))
        except (OSError, ValueError, TypeError, AttributeError):
            return
        if 0 < value < 1e5:
            self.job_rate = value

    def _save(self) -> None:
        if self.calibration_file is None:
            return
        try:
            try:
                data = json.loads(self.calibration_file.read_text())
                data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                data = {}
            data[self.calibration_key] = round(self.job_rate, 3)
            tmp = self.calibration_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.calibration_file)
        except OSError as exc:
            log.debug("cannot keep the speed calibration: %s", exc)


# Speed assumed before anything was measured (audio s per wall s).
INITIAL_SPEED_GUESS = 10.0
# A 21-24 s chunk of speech cost ~3.2x a silent 30 s window (tiny.en int8, beam 5, 2 cores;
# `bench/speed.py` reports how close the first estimate comes).
WARMUP_SPEECH_FACTOR = 3.2
WARMUP_SECONDS = 30.0


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
