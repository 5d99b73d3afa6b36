"""A node: engine + job store + scheduler + chunk worker, with a load snapshot for the API."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import time
import uuid
from datetime import datetime, timezone

import psutil

from . import __version__
from .config import Settings
from .engines import load_engine
from .jobs.records import JobRecord
from .jobs.scheduler import Scheduler
from .jobs.service import JobService
from .jobs.sqlite_store import SqliteJobStore
from .jobs.store import JobStore
from .jobs.worker import ChunkWorker, SpeedMeter, register_tasks
from .metrics import Metrics
from .queue import make_broker

log = logging.getLogger(__name__)

CLEANUP_INTERVAL = 60.0


def _node_id(data_dir) -> str:
    """A stable id for this node, kept in the data directory."""
    path = data_dir / "node_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        node_id = uuid.uuid4().hex[:12]
        path.write_text(node_id)
        return node_id


class Node:
    def __init__(self, settings: Settings, *, engine=None) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = Metrics()
        self.speed = SpeedMeter()
        self.store: JobStore | None = None
        self.scheduler: Scheduler | None = None
        self.service: JobService | None = None
        self.worker: ChunkWorker | None = None
        self.started_at = time.time()
        self.state = "starting"
        self.node_id = ""
        self._broker = None
        self._background: list[asyncio.Task] = []
        self._process = psutil.Process()
        self._process.cpu_percent(None)
        self.job_listeners: list = []  # callables(job) run when a job completes or fails

    @property
    def name(self) -> str:
        return self.settings.worker_id

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.node_id = _node_id(s.data_dir)
        if self.engine is None:
            self.engine = await asyncio.to_thread(load_engine, s)
        self.store = SqliteJobStore(s.db_path)
        requeued = await self.store.requeue_running()
        if requeued:
            log.info("resuming %d chunks left running by the previous run", requeued)
        self._broker = make_broker()
        self.worker = ChunkWorker(self.store, self.engine, self.node_id, speed=self.speed,
                                  on_chunk_end=self._chunk_ended, on_job_end=self._job_ended)
        task = register_tasks(self._broker, self.worker)
        await self._broker.startup()
        self.scheduler = Scheduler(
            self.store, lambda job_id, index: task.kiq(job_id, index),
            worker_id=self.node_id, models=[self.engine.model_name], max_concurrent=s.max_concurrent_chunks,
        )
        self.service = JobService(
            self.store, self.engine, max_duration=s.max_duration_seconds, data_dir=s.data_dir,
            min_free_bytes=s.min_free_disk_mb * 1024 * 1024, default_language=s.language,
            beam_size=s.beam_size, speed=self.speed, on_submitted=self._job_submitted,
        )
        await self.scheduler.start()
        self._background.append(asyncio.create_task(self._cleanup_loop(), name="sayit-cleanup"))
        self.state = "up"
        log.info("node %s (%s) ready: %s on %s, %d parallel chunks", self.name, self.node_id,
                 self.engine.model_name, self.engine.name, s.max_concurrent_chunks)

    async def stop(self) -> None:
        self.state = "stopping"
        if self.scheduler:
            await self.scheduler.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._broker is not None:
            # Chunks still running go back to the queue; they are resumed on the next start.
            for task in list(getattr(self._broker, "_running_tasks", ())):
                task.cancel()
            await asyncio.sleep(0)
            await self._broker.shutdown()
        if self.store:
            await self.store.requeue_running(self.node_id)
            await self.store.close()
        self.state = "stopped"
        log.info("node %s stopped", self.name)

    # -- events ------------------------------------------------------------------------------
    def _job_submitted(self) -> None:
        self.metrics.jobs_submitted.inc()
        if self.scheduler:
            self.scheduler.wake()

    def _chunk_ended(self, job_id: str, index: int) -> None:
        if self.scheduler:
            self.scheduler.chunk_finished(job_id, index)

    def _job_ended(self, job: JobRecord) -> None:
        self.metrics.jobs.labels(job.status).inc()
        for listener in self.job_listeners:
            listener(job)

    async def _cleanup_loop(self) -> None:
        while True:
            try:
                cutoff = time.time() - self.settings.retention_hours * 3600
                deleted = await self.store.delete_finished_before(cutoff)
                if deleted:
                    log.info("deleted %d jobs older than the retention time", deleted)
            except Exception:
                log.exception("cleanup failed")
            await asyncio.sleep(min(CLEANUP_INTERVAL, self.settings.retention_hours * 3600 / 4))

    # -- views ---------------------------------------------------------------------------------
    async def load(self) -> dict:
        counts = await self.store.counts()
        speed = round(self.speed.speed(), 2)
        active = self.worker.active if self.worker else 0
        self.metrics.active_chunks.set(active)
        self.metrics.queued_chunks.set(counts.chunks["queued"])
        self.metrics.speed.set(speed)
        return {
            "cpu": psutil.cpu_percent(None),
            "memory": self._process.memory_info().rss,
            "activeChunks": active,
            "queuedChunks": counts.chunks["queued"],
            "speed": speed,
        }

    async def describe(self) -> dict:
        """This node as an entry of `GET /api/nodes`."""
        s = self.settings
        return {
            "id": self.node_id,
            "name": self.name,
            "state": self.state,
            "version": __version__,
            "engine": self.engine.name if self.engine else None,
            "model": self.engine.model_name if self.engine else s.model,
            "cores": os.cpu_count() or 1,
            "maxConcurrentChunks": s.max_concurrent_chunks,
            "load": await self.load(),
            "lastSeen": datetime.now(timezone.utc).isoformat(),
            "url": f"http://{s.host}:{s.port}",
            "self": True,
        }

    def diagnose(self) -> dict:
        import shutil
        import sys

        import av
        import ctranslate2
        import faster_whisper
        import litestar
        import taskiq

        s = self.settings
        vm = psutil.virtual_memory()
        disk = shutil.disk_usage(s.data_dir)
        return {
            "node": {"id": self.node_id, "name": self.name, "state": self.state, "uptime": time.time() - self.started_at},
            "engine": self.engine.name,
            "model": self.engine.model_name,
            "multilingual": self.engine.is_multilingual,
            "device": self.engine.device,
            "computeType": s.compute_type,
            "beamSize": s.beam_size,
            "versions": {
                "sayit": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
                "faster_whisper": faster_whisper.__version__, "ctranslate2": ctranslate2.__version__,
                "av": av.__version__, "litestar": litestar.__version__ if hasattr(litestar, "__version__") else None,
                "taskiq": getattr(taskiq, "__version__", None),
            },
            "cores": os.cpu_count(),
            "memory": {"total": vm.total, "available": vm.available, "rss": self._process.memory_info().rss},
            "disk": {"path": str(s.data_dir), "total": disk.total, "free": disk.free},
            "limits": {
                "maxDurationMinutes": s.max_duration_minutes,
                "maxUploadMb": s.max_upload_mb,
                "maxConcurrentChunks": s.max_concurrent_chunks,
                "retentionHours": s.retention_hours,
                "minFreeDiskMb": s.min_free_disk_mb,
            },
            "warnings": [],
        }
