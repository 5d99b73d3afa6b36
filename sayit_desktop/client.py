"""The node's HTTP API as the tray uses it: the shared `sayit_node.client` plus the poll
snapshot the tray shows. Blocking calls: run them off the UI thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sayit_node.client import NodeClient as _NodeClient
from sayit_node.client import NodeError

NodeUnavailable = NodeError  # the tray's name for it: nothing (or no SayIt node) answered


@dataclass
class Snapshot:
    """One poll of a node: what the tray status line, notifications and load window show."""

    health: dict[str, Any]
    queue: dict[str, Any] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def degraded(self) -> str | None:
        """Why the node is degraded (e.g. the cluster's Redis is unreachable), else None."""
        if self.health.get("status") == "degraded":
            return str(self.health.get("reason") or "degraded")
        return None

    @property
    def me(self) -> dict[str, Any]:
        for node in self.nodes:
            if node.get("self"):
                return node
        return {}

    @property
    def peers(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes if not n.get("self")]

    @property
    def peers_up(self) -> list[dict[str, Any]]:
        return [n for n in self.peers if n.get("state") == "up"]

    @property
    def load(self) -> dict[str, Any]:
        return self.me.get("load") or {}

    @property
    def active_chunks(self) -> int:
        if "activeChunks" in self.load:
            return int(self.load.get("activeChunks") or 0)
        return int((self.queue.get("chunks") or {}).get("running") or 0)

    @property
    def queued_chunks(self) -> int:
        if "queuedChunks" in self.load:
            return int(self.load.get("queuedChunks") or 0)
        return int((self.queue.get("chunks") or {}).get("queued") or 0)

    def job_count(self, status: str) -> int:
        return int((self.queue.get("jobs") or {}).get(status) or 0)

    @property
    def busy(self) -> bool:
        return bool(self.active_chunks or self.queued_chunks
                    or self.job_count("running") or self.job_count("queued"))


class NodeClient(_NodeClient):
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 3.0) -> None:
        super().__init__(base_url, api_key, timeout=timeout, client_name="sayit-desktop")

    def snapshot(self) -> Snapshot:
        """Health first (raises if the node is not there), then the rest, best effort."""
        snap = Snapshot(health=self.health())
        for name, call in (("queue", self.queue_status), ("jobs", self.jobs), ("nodes", self.nodes)):
            try:
                setattr(snap, name, call())
            except (NodeError, AttributeError, TypeError) as exc:
                snap.errors.append(str(exc))
        return snap
