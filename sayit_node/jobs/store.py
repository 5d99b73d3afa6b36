"""The job store: the source of truth for jobs, chunk audio and chunk results.

Everything else (scheduler, task, API) goes through this interface, so the standalone
SQLite store and the federation's Redis store are interchangeable. Chunk task messages
carry only (job id, chunk index); the audio comes from here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .records import ChunkRecord, InvalidOptions, JobOptions, JobRecord


@dataclass
class ChunkWork:
    """Everything a worker needs to run one chunk."""

    job_id: str
    index: int
    model: str
    language: str | None
    options: JobOptions
    offset: int
    pcm16: bytes


@dataclass
class QueueCounts:
    jobs: dict[str, int]
    chunks: dict[str, int]


class CorruptChunk(ValueError):
    """A chunk the store cannot hand to the engine (bad options, missing or malformed audio).

    The worker counts it as a failed attempt: after MAX_CHUNK_ATTEMPTS the job fails with
    this message instead of the chunk going round the queue forever."""


def parse_options(raw) -> JobOptions:
    """Stored options (JSON text) -> checked JobOptions; raises CorruptChunk."""
    try:
        return JobOptions.from_dict(json.loads(raw))
    except (TypeError, ValueError) as exc:  # InvalidOptions, JSONDecodeError, UnicodeDecodeError
        raise CorruptChunk(str(exc) if isinstance(exc, InvalidOptions) else
                           f"stored job options are not valid JSON ({type(exc).__name__})") from None


def options_or_default(raw) -> JobOptions:
    """For showing a job: corrupt options must not break listing it (its chunks will fail)."""
    try:
        return parse_options(raw)
    except CorruptChunk:
        return JobOptions()


class StoreFull(Exception):
    """The store has no room for a new job right now (disk or memory budget)."""


class JobStore(ABC):
    @abstractmethod
    async def create_job(self, job: JobRecord, chunks: list[ChunkRecord], audio: list[bytes]) -> None:
        """Store a job with its chunks and their audio, all or nothing."""

    @abstractmethod
    async def get_job(self, job_id: str) -> JobRecord | None: ...

    @abstractmethod
    async def list_jobs(self, limit: int = 100) -> list[JobRecord]: ...

    @abstractmethod
    async def chunks(self, job_id: str) -> list[ChunkRecord]:
        """A job's chunks in order, with results where done."""

    @abstractmethod
    async def claim_next_chunk(self, worker: str, models: list[str]) -> tuple[str, int] | None:
        """Mark the fairest next queued chunk running for `worker`: round-robin across jobs."""

    @abstractmethod
    async def load_chunk(self, job_id: str, index: int) -> ChunkWork | None:
        """The chunk's audio and options; None if the job is gone or finished."""

    @abstractmethod
    async def complete_chunk(self, job_id: str, index: int, segments: list[dict]) -> JobRecord | None:
        """Save a chunk's result (idempotent); completes the job when it was the last one."""

    @abstractmethod
    async def fail_chunk(self, job_id: str, index: int, error: str) -> JobRecord | None:
        """Record a failed attempt: requeue with a growing delay, or fail the job at the cap."""

    @abstractmethod
    async def release_chunk(self, job_id: str, index: int) -> None:
        """Hand a running chunk back to the queue without counting an attempt."""

    @abstractmethod
    async def cancel_job(self, job_id: str) -> JobRecord | None:
        """Cancel (or delete a finished job): status reads cancelled until retention; audio,
        segments and transcript go at once."""

    @abstractmethod
    async def requeue_running(self, worker: str | None = None) -> int:
        """After a restart: chunks left running (by `worker`, or anyone) go back to the queue."""

    @abstractmethod
    async def delete_finished_before(self, timestamp: float) -> int:
        """Delete jobs that finished before `timestamp`; returns how many."""

    @abstractmethod
    async def counts(self) -> QueueCounts: ...

    @abstractmethod
    async def close(self) -> None: ...

    # -- leases: only a shared store needs them; a single process owns every chunk it runs --
    async def renew_leases(self, worker: str, holding=None) -> int:
        """Extend the leases of every chunk `worker` holds (called every few seconds).

        `holding`: the (job, chunk) pairs the node really runs; others it holds are handed back.
        """
        return 0

    async def requeue_expired(self) -> int:
        """Chunks whose holder stopped renewing its lease go back to the queue."""
        return 0

    async def release_worker(self, worker: str) -> int:
        """Graceful stop: hand back every chunk `worker` holds at once."""
        return await self.requeue_running(worker)

    async def diagnose(self) -> dict:
        return {"backend": type(self).__name__, "warnings": []}
