"""Plain records the job store keeps: a job, and one chunk of it."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """A job's status as the API shows it. A StrEnum: equal to, stored and sent as its string."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ChunkStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = JobStatus
TERMINAL = (COMPLETED, FAILED, CANCELLED)
CHUNK_QUEUED, CHUNK_RUNNING, CHUNK_DONE, CHUNK_FAILED = ChunkStatus

# A chunk that fails this many times fails its job (with the chunk's reason).
MAX_CHUNK_ATTEMPTS = 3
RETRY_BASE_SECONDS = 2.0


def retry_delay(attempts: int) -> float | None:
    """Delay before retrying a chunk that has failed `attempts` times; None: give up."""
    if attempts >= MAX_CHUNK_ATTEMPTS:
        return None
    return RETRY_BASE_SECONDS * 2 ** (attempts - 1)


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex[:20]


@dataclass
class JobOptions:
    """What the client asked for; pinned at submission and applied to every chunk."""

    task: str = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    beam_size: int = 5
    diarize: bool = False  # speaker labels: embeddings per chunk, clustering once per job
    speakers: int | None = None  # exact speaker count, if the client knows it
    min_speakers: int | None = None
    max_speakers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Any) -> "JobOptions":
        """Options as stored (SQLite or the cluster's Redis, which any client of it can write):
        type and range checked, because a worker runs them. Raises InvalidOptions."""
        if not isinstance(data, dict):
            raise InvalidOptions(f"stored job options are not an object ({type(data).__name__})")
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        def bad(name: str, what: str) -> InvalidOptions:
            return InvalidOptions(f"stored job option '{name}' {what} (got {getattr(self, name)!r:.60})")

        if self.task not in ("transcribe", "translate"):
            raise bad("task", "must be 'transcribe' or 'translate'")
        for name, limit in (("language", MAX_LANGUAGE_CHARS), ("prompt", MAX_PROMPT_CHARS)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise bad(name, f"must be text of at most {limit} characters")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise bad("temperature", "must be a number between 0 and 1")
        for name in ("word_timestamps", "diarize"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be true or false")
        for name in ("speakers", "min_speakers", "max_speakers"):
            n = getattr(self, name)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_STORED_SPEAKERS):
                raise bad(name, f"must be a whole number from 1 to {MAX_STORED_SPEAKERS}")
        b = self.beam_size
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BEAM_SIZE:
            raise bad("beam_size", f"must be a whole number from 1 to {MAX_BEAM_SIZE}")


class InvalidOptions(ValueError):
    """Stored job options of the wrong type or out of range (corrupt or written by a stranger)."""


MAX_LANGUAGE_CHARS = 32
MAX_PROMPT_CHARS = 4000  # the API caps prompts at 2000 characters
MAX_BEAM_SIZE = 20
MAX_STORED_SPEAKERS = 100  # the API caps it lower; this only keeps clustering bounded


@dataclass
class JobRecord:
    id: str
    model: str
    options: JobOptions
    duration: float  # seconds of audio
    filename: str = ""
    status: str = QUEUED
    language: str | None = None
    total_chunks: int = 0
    completed_chunks: int = 0
    failed_chunks: int = 0
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def progress(self) -> float:
        if self.status == COMPLETED:
            return 100.0
        if self.total_chunks == 0:
            return 0.0
        return round(100.0 * self.completed_chunks / self.total_chunks, 1)


@dataclass
class ChunkRecord:
    job_id: str
    index: int
    start: int  # sample offset in the recording
    end: int
    status: str = CHUNK_QUEUED
    attempts: int = 0
    error: str | None = None
    segments: list[dict] | None = None  # engine Segment dicts, chunk-relative times
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def duration(self) -> float:
        return (self.end - self.start) / 16_000
