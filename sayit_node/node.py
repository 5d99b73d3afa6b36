"""A node: engine + job store + taskiq receiver + chunk worker, with a load snapshot for the API.

The same class runs a full node (`sayit-node serve`, with the HTTP API around it) and a
worker-only process (`sayit-node worker`, no API): both pull chunks from the job store through
taskiq's receiver (see queue/broker.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from taskiq.api import run_receiver_task
from datetime import datetime, timezone

import psutil

from . import __version__
from .config import Settings
from .datadir import DataDirLock, private_dir, private_file
from .engines import cuda_device_count, load_engine
from .federation.advert import PROTOCOL_VERSION, NodeAdvert
from .federation.cluster_keys import ClusterKeys
from .federation.discovery import Discovery
from .federation.hosted_redis import HostedRedis
from .federation.link import ClusterLink, StartupError, check_redis, describe_redis_error
from .jobs.admission import QueuedAudio
from .jobs.records import JobRecord
from .jobs.service import JobService
from .jobs.sqlite_store import SqliteJobStore
from .jobs.store import JobStore
from .jobs.worker import ChunkWorker, SpeedMeter, register_tasks
from .metrics import Metrics
from .queue import StoreBroker

log = logging.getLogger(__name__)

CLEANUP_INTERVAL = 60.0
LEASE_SECONDS = 15.0  # a dead node's chunk is rerun within ~LEASE + REAP_INTERVAL seconds
REAP_INTERVAL = 5.0
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TTL = 6.0  # a silent peer shows "down" after 3 s and is gone after this
JOIN_WAIT = 3.0  # how long a node without Redis looks for a cluster to join at start
STORE_SCHEMA = 1  # Redis key layout version (protocol 2 changed the adverts, not the store)


def _node_id(data_dir) -> str:
    """A stable id for this node, kept in the data directory."""
    path = data_dir / "node_id"
    try:
        node_id = path.read_text().strip()
        if node_id:
            return node_id
    except FileNotFoundError:
        pass
    node_id = uuid.uuid4().hex[:12]
    private_file(path).write_text(node_id)
    return node_id


class Node:
    def __init__(self, settings: Settings, *, engine=None, role: str = "node") -> None:
        self.settings = settings
        self.role = role  # "node" (HTTP API + workers) or "worker" (workers only)
        self.engine = engine
        self.metrics = Metrics()
        self.speed = SpeedMeter()
        self.store: JobStore | None = None
        self.broker: StoreBroker | None = None
        self.service: JobService | None = None
        self.worker: ChunkWorker | None = None
        self.engine_executor: ThreadPoolExecutor | None = None
        self._speaker_embedder = None
        self._speaker_lock = threading.Lock()
        self.started_at = time.time()
        self.state = "starting"
        self.node_id = ""
        self._background: list[asyncio.Task] = []
        self._process = psutil.Process()
        self._process.cpu_percent(None)
        self.registry = None
        self.discovery: Discovery | None = None
        self.hosted_redis: HostedRedis | None = None
        self.keys = ClusterKeys.derive(None)
        self.link: ClusterLink | None = None  # watches the cluster's Redis (federated only)
        self._lock: DataDirLock | None = None

    @property
    def cluster_problem(self) -> str | None:
        """None while the node can use its job store; else why not (the cluster's Redis is gone)."""
        if self.link is None or self.link.ok:
            return None
        return self.link.message()

    @property
    def mode(self) -> str:
        return "federated" if self.registry is not None else "standalone"

    @property
    def name(self) -> str:
        return self.settings.worker_id

    async def start(self) -> None:
        s = self.settings
        if self.role == "worker" and s.effective_redis_url is None:
            raise StartupError("a worker-only process needs the cluster's Redis: set REDIS_URL (or REDIS_HOST)")
        private_dir(s.data_dir)
        lock = DataDirLock(s.data_dir)
        lock.acquire()  # DataDirInUse: another node runs on this directory
        self._lock = lock
        self.node_id = _node_id(s.data_dir)
        if self.engine is None:
            self.engine = await asyncio.to_thread(load_engine, s)
        await self._open_store()
        self.speed.load_calibration(s.data_dir / "engine_speed.json", self._calibration_key())
        models = [self.engine.model_name]
        self.broker = StoreBroker(lambda: self._claim(models))
        # The engine gets threads of its own (one per parallel chunk, one for language detection).
        slots = self.slots
        self.engine_executor = ThreadPoolExecutor(slots + 1, thread_name_prefix="sayit-engine")
        self.worker = ChunkWorker(self.store, self.engine, self.node_id, speed=self.speed,
                                  on_job_end=self._job_ended, on_chunk_done=self._chunk_done,
                                  executor=self.engine_executor, speaker_model=self.speaker_model)
        register_tasks(self.broker, self.worker)
        await self.broker.startup()
        self.service = JobService(
            self.store, self.engine, max_duration=s.max_duration_seconds, data_dir=s.data_dir,
            min_free_bytes=s.min_free_disk_mb * 1024 * 1024, default_language=s.language,
            beam_size=s.beam_size, speed=self.speed, on_submitted=self._job_submitted,
            queued=QueuedAudio(s.max_queued_minutes * 60, s.max_queued_minutes_per_client * 60, self._drain_speed),
            engine_executor=self.engine_executor, parallel_decodes=max(2, (os.cpu_count() or 1) // 2),
        )
        if self.registry is not None:
            self.service.live_models = self.live_models
        # Before the first chunk: the model's first-call costs are paid here, not by a job.
        await self._warm_up()
        # taskiq's receiver asks the broker for a chunk only when one of its slots is free.
        self._spawn(run_receiver_task(self.broker, max_async_tasks=slots, max_prefetch=0,
                                      propagate_exceptions=False), "sayit-receiver")
        self._spawn(self._cleanup_loop(), "sayit-cleanup")
        if self.link is not None:
            self._spawn(self.link.run(), "sayit-link")
        if self.registry is not None:
            self._spawn(self._lease_loop(), "sayit-leases")
            self._spawn(self._reap_loop(), "sayit-reaper")
            self._spawn(self._heartbeat_loop(), "sayit-heartbeat")
        self.state = "up"
        log.info("%s %s (%s) ready in %s mode: %s on %s, %d parallel chunks", self.role, self.name, self.node_id,
                 self.mode, self.engine.model_name, self.engine.name, slots)

    def _drain_speed(self) -> float:
        """How fast queued audio drains, for a 429's Retry-After: the speed measured over the last
        minute, but never below the node's calibrated speed (the window is empty while the first
        chunks of a busy queue still run, which would make clients wait 10x too long)."""
        return max(self.speed.speed(), self.speed.rate())

    def _calibration_key(self) -> str:
        e = self.engine
        return "|".join(str(x) for x in (e.name, e.model_name, getattr(e, "device", "?"),
                                          getattr(e, "compute_type", ""), getattr(e, "batch_size", 1),
                                          getattr(e, "parallel_chunks", 1),
                                          self.settings.beam_size, os.cpu_count() or 1))

    async def _warm_up(self) -> None:
        """First-call costs paid before the first job, and a first speed estimate measured:
        a silent 30 s window through each model worker, on the engine's own threads."""
        from .jobs.worker import WARMUP_SECONDS

        # One window per model worker at once (a batching engine gives each idle worker its
        # share), so no worker pays its first-call costs inside a job.
        windows = max(1, min(int(getattr(self.engine, "parallel_chunks", 1)), self.slots))
        self.speed.workers = windows
        if self.engine.name == "simulated":  # sleeps `simulated_cost` per audio second, slots at once
            self.speed.workers = self.slots
            self.speed.warmup_rate = 1.0 / max(self.settings.simulated_cost, 1e-6)
            self.speed.warmup_window = WARMUP_SECONDS * self.settings.simulated_cost
            return
        import numpy as np

        from .engines.base import TranscribeOptions

        samples = np.zeros(int(WARMUP_SECONDS * 16_000), np.float32)
        options = TranscribeOptions(language="en" if not self.engine.is_multilingual else "en",
                                    beam_size=self.settings.beam_size)
        loop = asyncio.get_running_loop()
        try:
            started = time.monotonic()
            await asyncio.gather(*(loop.run_in_executor(self.engine_executor, self.engine.transcribe, samples,
                                                        options) for _ in range(windows)))
            wall = time.monotonic() - started
        except Exception as exc:  # a warm-up problem is not the node's problem
            log.debug("warm-up failed: %s", exc)
            return
        self.speed.record_warmup(windows, wall)
        log.info("warm-up: %d silent 30 s window(s) at once in %.2f s; first estimates assume %.2f s per window "
                 "on each of %d workers%s", windows, wall, self.speed.window_cost(), self.speed.workers,
                 " (kept from earlier jobs)" if self.speed.job_window else "")

    @property
    def slots(self) -> int:
        """Chunks this node holds at once: MAX_CONCURRENT_CHUNKS when set, else what keeps the
        engine busy (a batching engine wants a whole batch in flight). Standalone, a batching
        engine holds two batches: a long job's chunks then reach its workers together and are
        split evenly, instead of one worker taking the last batch alone (6-minute file, 4-5
        reps: base +6%, tiny.en +2%). In a cluster a node holds one batch and leaves the rest
        of a job to the other nodes."""
        s = self.settings
        if s.concurrency_given or self.engine is None:
            return s.max_concurrent_chunks
        engine_slots = max(1, int(getattr(self.engine, "slots", s.max_concurrent_chunks)))
        if self.registry is None and getattr(self.engine, "batch_size", 1) > 1:
            return 2 * engine_slots
        return engine_slots

    def speaker_model(self):
        """The speaker embedder for diarization, loaded (or downloaded) on first use."""
        with self._speaker_lock:
            if self._speaker_embedder is None:
                from .diarize.embedder import SpeakerEmbedder
                from .diarize.models import resolve_speaker_model

                name = self.settings.speaker_model
                path = resolve_speaker_model(name, self.settings.whisper_cache_dir)
                self._speaker_embedder = SpeakerEmbedder(path, name=name)
                log.info("speaker model %s loaded from %s", name, path)
            return self._speaker_embedder

    def _spawn(self, coro, name: str) -> None:
        self._background.append(asyncio.create_task(coro, name=name))

    def _advert(self) -> NodeAdvert:
        s = self.settings
        return NodeAdvert(
            node_id=self.node_id, name=self.name, version=__version__, engine=self.engine.name,
            model=self.engine.model_name, cores=os.cpu_count() or 1, api_port=s.port or 1,
            hosts_redis=self.hosted_redis is not None,
            redis_port=self.hosted_redis.port if self.hosted_redis else None,
            cert_fingerprint=self.hosted_redis.cert_fingerprint if self.hosted_redis else "",
        )

    async def _open_store(self) -> None:
        """Standalone SQLite, or the cluster's Redis (configured, hosted here, or discovered)."""
        s = self.settings
        url = s.effective_redis_url
        self.keys = ClusterKeys.derive(s.cluster_secret)
        if s.host_redis:
            self.hosted_redis = HostedRedis(
                executable=s.redis_server_path, bind_host=s.host, port=s.hosted_redis_port,
                password=self.keys.redis_password, data_dir=s.data_dir / "redis",
            )
            await self.hosted_redis.start()
            url = self.hosted_redis.url
        if s.discovery:
            self.discovery = Discovery(self._advert(), bind_host=s.host, keys=self.keys,
                                       liveness_source=self._live_ids)
            try:
                await self.discovery.start()
            except Exception as exc:  # no multicast here: run without discovery
                log.warning("mDNS discovery unavailable on %s (%s); continuing without it", s.host, exc)
                self.discovery = None
            if url is None and self.discovery is not None:
                url = await self._find_cluster_redis()
        if url is None:
            private_file(s.db_path)  # SQLite gives its -wal and -shm files the same mode
            self.store = SqliteJobStore(s.db_path)
            requeued = await self.store.requeue_running()
            if requeued:
                log.info("resuming %d chunks left running by the previous run", requeued)
            return
        from .federation.registry import NodeRegistry
        from .jobs.redis_store import RedisJobStore

        configured = url == s.effective_redis_url  # else hosted here or found over mDNS (secret-derived)
        await check_redis(url, configured=configured)  # fails fast (StartupError), never hangs
        store = RedisJobStore(
            url, retention_seconds=s.retention_hours * 3600, lease_seconds=LEASE_SECONDS,
            key_prefix=f"sayit:v{STORE_SCHEMA}:",
            memory_budget_bytes=s.redis_memory_budget_mb * 2**20 or None,
        )
        registry = NodeRegistry(store.redis, self.node_id, key_prefix="sayit:")
        other = await registry.alive_elsewhere(window=HEARTBEAT_INTERVAL * 2.5)
        if other is not None:
            await store.close()  # and touch nothing: the chunks under this id are the other node's
            where = other.get("url") or f"a {other.get('role') or 'node'} process"
            raise StartupError(
                f"node id {self.node_id} is already in use by '{other.get('name', '?')}' ({where}), alive in this "
                f"cluster: was its data directory copied? Give this node its own: delete {s.data_dir / 'node_id'} "
                "(a new id is made) or set SAYIT_DATA_DIR"
            )
        self.store, self.registry = store, registry
        self.link = ClusterLink(url)
        # Chunks this node held before a crash go back to the queue (node ids are stable).
        await store.release_worker(self.node_id)
        for warning in (await store.diagnose()).get("warnings", []):
            log.warning("Redis: %s", warning)

    async def _find_cluster_redis(self) -> str | None:
        """The Redis of our cluster, found over mDNS within JOIN_WAIT seconds (see federation/join.py)."""
        from .federation.join import find_cluster_redis

        return await find_cluster_redis(self.discovery, self.keys, JOIN_WAIT)

    async def live_models(self) -> set[str]:
        """Models served by this node and by live, compatible peers."""
        models = {self.engine.model_name}
        for peer in await self.peers():
            if peer.get("state") == "up" and peer.get("model"):
                models.add(peer["model"])
        return models

    async def _live_ids(self) -> set[str]:
        if self.registry is None or not self._store_ok():  # not 15 s of reconnect attempts per call
            return set()
        try:
            return {n["id"] for n in await self.registry.live_nodes()}
        except Exception:
            return set()

    async def stop(self) -> None:
        self.state = "stopping"
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.worker is not None:
            # Chunks still running go back to the queue at once (resumed here or on a peer).
            await self.worker.cancel_all()
        if self.broker is not None:
            await self.broker.shutdown()
        if self.engine_executor is not None:
            self.engine_executor.shutdown(wait=False, cancel_futures=True)
        if self.store:
            if self.cluster_problem:
                log.warning("cannot hand back chunks: %s; they rerun when their leases end", self.link.problem)
            else:
                try:
                    await asyncio.wait_for(self._hand_back(), timeout=3.0)
                except Exception as exc:
                    self._store_failed("handing back chunks", exc)
            await self.store.close()
        if self.link is not None:
            await self.link.close()
        if self.discovery is not None:
            await self.discovery.stop()  # mDNS goodbye
        if self.hosted_redis is not None:
            self.hosted_redis.stop()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.state = "stopped"
        log.info("node %s stopped", self.name)

    async def _claim(self, models: list[str]):
        if not self._store_ok():  # the cluster's Redis is gone: nothing to claim until it is back
            return None
        return await self.store.claim_next_chunk(self.node_id, models)

    async def _hand_back(self) -> None:
        await self.store.release_worker(self.node_id)
        if self.registry is not None:
            await self.registry.remove()

    def _store_failed(self, what: str, exc: BaseException) -> None:
        """One line for a store failure: Redis trouble is expected (the link reports it), a bug is not."""
        from redis.exceptions import RedisError

        if isinstance(exc, (RedisError, OSError, asyncio.TimeoutError)):
            if self.link is None or self.link.ok:  # while the link is down it has said so already
                log.warning("%s failed: %s", what, describe_redis_error(exc))
        else:
            log.exception("%s failed", what, exc_info=exc)

    def _store_ok(self) -> bool:
        return self.link is None or self.link.ok

    # -- events ------------------------------------------------------------------------------
    def _job_submitted(self) -> None:
        self.metrics.jobs_submitted.inc()
        if self.broker:
            self.broker.wake()

    def _chunk_done(self, audio_seconds: float, wall_seconds: float) -> None:
        self.metrics.chunks.inc()
        self.metrics.audio_seconds.inc(audio_seconds)
        self.metrics.chunk_duration.observe(wall_seconds)

    def _job_ended(self, job: JobRecord) -> None:
        if self.service is not None:
            self.service.queued.release(job.id)
            self.service.job_ended(job.id)
        if job.status == "completed" and job.started_at and job.finished_at:
            self.speed.record_job(job.duration, job.finished_at - job.started_at, job.total_chunks)
        self.metrics.jobs.labels(job.status).inc()

    async def _cleanup_loop(self) -> None:
        while True:
            try:
                if self._store_ok():
                    cutoff = time.time() - self.settings.retention_hours * 3600
                    deleted = await self.store.delete_finished_before(cutoff)
                    if deleted:
                        log.info("deleted %d jobs older than the retention time", deleted)
            except Exception as exc:
                self._store_failed("cleanup", exc)
            await asyncio.sleep(min(CLEANUP_INTERVAL, self.settings.retention_hours * 3600 / 4))

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            if not self._store_ok():
                continue
            try:
                await self.store.renew_leases(self.node_id, holding=set(self.broker.in_flight))
            except Exception as exc:
                self._store_failed("lease renewal", exc)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            if not self._store_ok():
                continue
            try:
                if await self.store.requeue_expired():
                    self.broker.wake()
            except Exception as exc:
                self._store_failed("requeueing expired chunks", exc)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                if self._store_ok():
                    await self.registry.publish(await self.describe(), ttl=HEARTBEAT_TTL)
            except Exception as exc:
                self._store_failed("heartbeat", exc)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    # -- views ---------------------------------------------------------------------------------
    async def load(self) -> dict:
        queued = 0
        if self._store_ok():
            try:
                queued = (await self.store.counts()).chunks["queued"]
            except Exception as exc:
                self._store_failed("counting queued chunks", exc)
        speed = round(self.speed.speed(), 2)
        active = self.worker.active if self.worker else 0
        self.metrics.active_chunks.set(active)
        self.metrics.queued_chunks.set(queued)
        self.metrics.speed.set(speed)
        return {
            "cpu": psutil.cpu_percent(None),
            "memory": self._process.memory_info().rss,
            "activeChunks": active,
            "queuedChunks": queued,
            "speed": speed,
            "chunksDone": self.speed.total_chunks,
        }

    async def describe(self) -> dict:
        """This node as an entry of `GET /api/nodes`."""
        s = self.settings
        return {
            "id": self.node_id,
            "name": self.name,
            "state": "degraded" if self.state == "up" and not self._store_ok() else self.state,
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "engine": self.engine.name if self.engine else None,
            "model": self.engine.model_name if self.engine else s.model,
            "cores": os.cpu_count() or 1,
            "maxConcurrentChunks": self.slots,
            "device": getattr(self.engine, "device", None) if self.engine else None,
            "hostsRedis": self.hosted_redis is not None,
            "load": await self.load(),
            "lastSeen": datetime.now(timezone.utc).isoformat(),
            "url": f"http://{s.host}:{s.port}" if self.role == "node" else None,
            "role": self.role,
            "self": True,
        }

    async def nodes(self) -> list[dict]:
        """This node first, then its peers (`GET /api/nodes`). Without the cluster's Redis the
        peers are unknown: only this node is listed (see `cluster_problem`)."""
        me = await self.describe()
        if not self._store_ok():
            return [me]
        try:
            return [me, *await self.peers()]
        except Exception as exc:
            self._store_failed("listing peers", exc)
            return [me]

    async def peers(self) -> list[dict]:
        """Peers from Redis heartbeats (federated) or from mDNS (standalone)."""
        out = []
        if self.registry is not None:
            now = datetime.now(timezone.utc)
            for peer in await self.registry.live_nodes():
                if peer.get("id") == self.node_id:
                    continue
                peer = {**peer, "self": False}
                try:
                    age = (now - datetime.fromisoformat(peer["lastSeen"])).total_seconds()
                except (KeyError, ValueError):
                    age = 0.0
                if peer.get("protocol") != PROTOCOL_VERSION:
                    peer["state"] = "incompatible"
                elif age > 3 * HEARTBEAT_INTERVAL:
                    peer["state"] = "down"
                out.append(peer)
        elif self.discovery is not None:
            # Standalone: peers come from mDNS, kept alive by health checks. Federated: the
            # cluster's members are the Redis heartbeats above (faster to notice a dead node).
            for record in self.discovery.peers(include_down=False).values():
                a = record.advert
                out.append({
                    "id": a.node_id, "name": a.name, "version": a.version, "protocol": a.protocol,
                    "state": "up" if record.compatible else "incompatible", "engine": a.engine, "model": a.model,
                    "cores": a.cores, "hostsRedis": a.hosts_redis, "load": None,
                    "lastSeen": datetime.fromtimestamp(time.time() - (time.monotonic() - record.last_seen),
                                                       timezone.utc).isoformat(),
                    "url": record.base_url, "self": False,
                })
        return out

    async def diagnose(self) -> dict:
        import shutil
        import sys

        import av
        import ctranslate2
        import faster_whisper
        import litestar
        import taskiq

        s = self.settings
        rejected = self.discovery.rejected() if self.discovery is not None else []
        problem = self.cluster_problem
        reason = self.link.problem if self.link is not None else None
        store_info: dict = {}
        if problem is None:
            try:
                store_info = await self.store.diagnose()
            except Exception as exc:
                if self.link is None:
                    raise
                self._store_failed("reading the store's state", exc)
                reason = describe_redis_error(exc)
                problem = f"the cluster's Redis at {self.link.address} did not answer ({reason})"
        if problem is not None:
            store_info = {"available": False, "redis": self.link.address, "problem": reason, "warnings": [problem]}
        vm = psutil.virtual_memory()
        disk = shutil.disk_usage(s.data_dir)
        return {
            "node": {"id": self.node_id, "name": self.name, "state": "degraded" if problem else self.state,
                     "uptime": time.time() - self.started_at},
            "engine": self.engine.name,
            "model": self.engine.model_name,
            "multilingual": self.engine.is_multilingual,
            "device": self.engine.device,
            "deviceSetting": s.device,
            "cudaDevices": cuda_device_count(),
            "computeType": getattr(self.engine, "compute_type", s.compute_type),
            "batchSize": getattr(self.engine, "batch_size", 1),
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
                "maxConcurrentChunks": self.slots,
                "retentionHours": s.retention_hours,
                "minFreeDiskMb": s.min_free_disk_mb,
                "maxQueuedMinutes": s.max_queued_minutes,
                "maxQueuedMinutesPerClient": s.max_queued_minutes_per_client,
                "maxConcurrentUploads": s.max_concurrent_uploads,
                "maxEventStreams": s.max_event_streams,
            },
            "mode": self.mode,
            "store": store_info,
            "warnings": list(store_info.get("warnings", [])) + [r.message for r in rejected],
            "discovery": None if self.discovery is None else {
                "signed": not self.keys.open, "rejectedAdverts": [r.as_dict() for r in rejected],
            },
        }
