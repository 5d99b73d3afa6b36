"""Standalone job store: one SQLite database in the data directory (WAL, durable commits).

Chunk audio is kept as 16-bit PCM blobs in its own table so listing jobs never touches it.
All SQL runs in a worker thread behind one lock; every method is a single transaction.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

from .records import (
    CANCELLED,
    CHUNK_DONE,
    CHUNK_FAILED,
    CHUNK_QUEUED,
    CHUNK_RUNNING,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    TERMINAL,
    retry_delay,
    ChunkRecord,
    JobOptions,
    JobRecord,
)
from .store import ChunkWork, CorruptChunk, JobStore, QueueCounts, StoreFull, options_or_default, parse_options

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    options TEXT NOT NULL,
    duration REAL NOT NULL,
    filename TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    language TEXT,
    total_chunks INTEGER NOT NULL,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    last_claim_at REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    error TEXT,
    segments TEXT,
    worker TEXT,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS chunks_status ON chunks(status);
CREATE TABLE IF NOT EXISTS chunk_audio (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    pcm16 BLOB NOT NULL,
    PRIMARY KEY (job_id, idx)
);
"""

_JOB_COLUMNS = "id, model, options, duration, filename, status, language, total_chunks, error, created_at, started_at, finished_at"


class SqliteJobStore(JobStore):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------
    async def _run(self, fn, *args):
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn, *args):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(*args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def _job(self, job_id: str) -> JobRecord | None:
        row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else self._job_from_row(row)

    def _job_from_row(self, row) -> JobRecord:
        job = JobRecord(
            id=row[0], model=row[1], options=options_or_default(row[2]), duration=row[3],
            filename=row[4], status=row[5], language=row[6], total_chunks=row[7], error=row[8],
            created_at=row[9], started_at=row[10], finished_at=row[11],
        )
        done, failed = self._db.execute(
            "SELECT COALESCE(SUM(status='done'),0), COALESCE(SUM(status='failed'),0) FROM chunks WHERE job_id=?",
            (job.id,),
        ).fetchone()
        job.completed_chunks = job.total_chunks if job.status == COMPLETED else done
        job.failed_chunks = failed
        return job

    # -- interface -----------------------------------------------------------------------------
    async def create_job(self, job, chunks, audio) -> None:
        def create():
            self._db.execute(
                "INSERT INTO jobs (id, model, options, duration, filename, status, language, total_chunks, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (job.id, job.model, json.dumps(job.options.to_dict()), job.duration, job.filename,
                 job.status, job.language, len(chunks), job.created_at),
            )
            for chunk, pcm in zip(chunks, audio, strict=True):
                self._db.execute(
                    'INSERT INTO chunks (job_id, idx, start, "end", status) VALUES (?,?,?,?,?)',
                    (job.id, chunk.index, chunk.start, chunk.end, CHUNK_QUEUED),
                )
                self._db.execute("INSERT INTO chunk_audio (job_id, idx, pcm16) VALUES (?,?,?)", (job.id, chunk.index, pcm))
            if not chunks:  # nothing to transcribe (silence): done at once
                self._db.execute(
                    "UPDATE jobs SET status=?, finished_at=? WHERE id=?", (COMPLETED, time.time(), job.id)
                )

        try:
            await self._run(create)
        except sqlite3.OperationalError as exc:
            if "disk" in str(exc).lower() or "full" in str(exc).lower():
                raise StoreFull("the data directory is full") from exc
            raise

    async def get_job(self, job_id):
        return await self._run(self._job, job_id)

    async def list_jobs(self, limit=100):
        def list_():
            rows = self._db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
            return [self._job_from_row(r) for r in rows]

        return await self._run(list_)

    async def chunks(self, job_id):
        def chunks_():
            rows = self._db.execute(
                'SELECT idx, start, "end", status, attempts, error, segments, worker, started_at, finished_at'
                " FROM chunks WHERE job_id=? ORDER BY idx",
                (job_id,),
            ).fetchall()
            return [
                ChunkRecord(job_id, r[0], r[1], r[2], r[3], r[4], r[5], None if r[6] is None else json.loads(r[6]),
                            r[7], r[8], r[9])
                for r in rows
            ]

        return await self._run(chunks_)

    async def claim_next_chunk(self, worker, models):
        def claim():
            now = time.time()
            marks = ",".join("?" * len(models))
            # Round-robin: the job with the fewest chunks in flight, then the one served least
            # recently, then the oldest; lowest chunk index first inside a job.
            row = self._db.execute(
                f"""
                SELECT c.job_id, c.idx FROM chunks c JOIN jobs j ON j.id = c.job_id
                WHERE c.status = 'queued' AND c.not_before <= ? AND j.status IN ('queued', 'running')
                  AND j.model IN ({marks})
                ORDER BY (SELECT COUNT(*) FROM chunks r WHERE r.job_id = c.job_id AND r.status = 'running'),
                         j.last_claim_at, j.created_at, c.idx
                LIMIT 1
                """,
                (now, *models),
            ).fetchone()
            if row is None:
                return None
            job_id, idx = row
            self._db.execute(
                "UPDATE chunks SET status=?, worker=?, started_at=? WHERE job_id=? AND idx=?",
                (CHUNK_RUNNING, worker, now, job_id, idx),
            )
            self._db.execute(
                "UPDATE jobs SET last_claim_at=?, status=?, started_at=COALESCE(started_at, ?) WHERE id=?",
                (now, RUNNING, now, job_id),
            )
            return job_id, idx

        return await self._run(claim)

    async def load_chunk(self, job_id, index):
        def load():
            job = self._job(job_id)
            if job is None or job.status in TERMINAL:
                return None
            row = self._db.execute(
                'SELECT c.start, a.pcm16 FROM chunks c LEFT JOIN chunk_audio a ON a.job_id=c.job_id AND a.idx=c.idx'
                " WHERE c.job_id=? AND c.idx=?",
                (job_id, index),
            ).fetchone()
            if row is None:
                return None  # no such chunk
            if row[1] is None:
                raise CorruptChunk(f"chunk {index} has no audio in the database")
            if len(row[1]) % 2:
                raise CorruptChunk(f"chunk {index} audio is malformed ({len(row[1])} bytes is not 16-bit PCM)")
            raw = self._db.execute("SELECT options FROM jobs WHERE id=?", (job_id,)).fetchone()[0]
            return ChunkWork(job_id, index, job.model, job.language, parse_options(raw), row[0], row[1])

        return await self._run(load)

    async def complete_chunk(self, job_id, index, segments):
        def complete():
            job = self._job(job_id)
            if job is None or job.status in TERMINAL:
                return job
            self._db.execute(
                "UPDATE chunks SET status=?, segments=?, finished_at=?, error=NULL WHERE job_id=? AND idx=?",
                (CHUNK_DONE, json.dumps(segments), time.time(), job_id, index),
            )
            remaining = self._db.execute(
                "SELECT COUNT(*) FROM chunks WHERE job_id=? AND status!='done'", (job_id,)
            ).fetchone()[0]
            if remaining == 0:
                self._db.execute("UPDATE jobs SET status=?, finished_at=? WHERE id=?", (COMPLETED, time.time(), job_id))
                self._db.execute("DELETE FROM chunk_audio WHERE job_id=?", (job_id,))
            return self._job(job_id)

        return await self._run(complete)

    async def fail_chunk(self, job_id, index, error):
        def fail():
            job = self._job(job_id)
            if job is None or job.status in TERMINAL:
                return job
            attempts = 1 + self._db.execute(
                "SELECT attempts FROM chunks WHERE job_id=? AND idx=?", (job_id, index)
            ).fetchone()[0]
            delay = retry_delay(attempts)
            if delay is None:
                self._db.execute(
                    "UPDATE chunks SET status=?, attempts=?, error=?, finished_at=? WHERE job_id=? AND idx=?",
                    (CHUNK_FAILED, attempts, error, time.time(), job_id, index),
                )
                self._db.execute(
                    "UPDATE jobs SET status=?, error=?, finished_at=? WHERE id=?",
                    (FAILED, f"chunk {index} failed {attempts} times: {error}", time.time(), job_id),
                )
                self._db.execute("DELETE FROM chunk_audio WHERE job_id=?", (job_id,))
            else:
                self._db.execute(
                    "UPDATE chunks SET status=?, attempts=?, error=?, not_before=?, worker=NULL"
                    " WHERE job_id=? AND idx=?",
                    (CHUNK_QUEUED, attempts, error, time.time() + delay, job_id, index),
                )
            return self._job(job_id)

        return await self._run(fail)

    async def release_chunk(self, job_id, index):
        def release():
            self._db.execute(
                "UPDATE chunks SET status=?, worker=NULL WHERE job_id=? AND idx=? AND status=?",
                (CHUNK_QUEUED, job_id, index, CHUNK_RUNNING),
            )

        await self._run(release)

    async def cancel_job(self, job_id):
        def cancel():
            job = self._job(job_id)
            if job is None:
                return None
            # A finished job too: its transcript goes with it (retention counts from its end).
            self._db.execute(
                "UPDATE jobs SET status=?, finished_at=COALESCE(finished_at, ?) WHERE id=?",
                (CANCELLED, time.time(), job_id),
            )
            self._db.execute("DELETE FROM chunk_audio WHERE job_id=?", (job_id,))
            self._db.execute("UPDATE chunks SET segments=NULL WHERE job_id=?", (job_id,))
            return self._job(job_id)

        return await self._run(cancel)

    async def requeue_running(self, worker=None):
        def requeue():
            if worker is None:
                cur = self._db.execute("UPDATE chunks SET status=?, worker=NULL WHERE status=?", (CHUNK_QUEUED, CHUNK_RUNNING))
            else:
                cur = self._db.execute(
                    "UPDATE chunks SET status=?, worker=NULL WHERE status=? AND worker=?",
                    (CHUNK_QUEUED, CHUNK_RUNNING, worker),
                )
            return cur.rowcount

        return await self._run(requeue)

    async def delete_finished_before(self, timestamp):
        def delete():
            cur = self._db.execute(
                "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? AND status IN (?,?,?)",
                (timestamp, COMPLETED, FAILED, CANCELLED),
            )
            return cur.rowcount

        deleted = await self._run(delete)
        if deleted:
            await asyncio.to_thread(self._vacuum)
        return deleted

    def _vacuum(self):
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def counts(self):
        def counts_():
            jobs = {s: 0 for s in (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)}
            for status, n in self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
                jobs[status] = n
            chunks = {s: 0 for s in (CHUNK_QUEUED, CHUNK_RUNNING, CHUNK_DONE, CHUNK_FAILED)}
            for status, n in self._db.execute(
                "SELECT c.status, COUNT(*) FROM chunks c JOIN jobs j ON j.id=c.job_id"
                " WHERE j.status NOT IN ('cancelled') GROUP BY c.status"
            ):
                chunks[status] = n
            return QueueCounts(jobs=jobs, chunks=chunks)

        return await self._run(counts_)

    async def close(self):
        def close_():
            with self._lock:
                self._db.close()

        await asyncio.to_thread(close_)
