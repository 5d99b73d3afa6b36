"""Prometheus metrics of one node (own registry, so several nodes can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter("sayit_jobs_total", "Jobs that ended, by status", ["status"], registry=self.registry)
        self.jobs_submitted = Counter("sayit_jobs_submitted_total", "Jobs accepted", registry=self.registry)
        self.chunks = Counter("sayit_chunks_total", "Chunks transcribed by this node", registry=self.registry)
        self.audio_seconds = Counter(
            "sayit_audio_seconds_total", "Seconds of audio transcribed by this node", registry=self.registry
        )
        self.chunk_duration = Histogram(
            "sayit_chunk_processing_seconds", "Wall time per chunk", registry=self.registry,
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
        )
        self.active_chunks = Gauge("sayit_active_chunks", "Chunks running on this node", registry=self.registry)
        self.queued_chunks = Gauge("sayit_queued_chunks", "Chunks waiting", registry=self.registry)
        self.speed = Gauge("sayit_speed", "Recent audio seconds per wall second", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
