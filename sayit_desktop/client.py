"""The node's HTTP API, as the tray uses it. Blocking calls: run them off the UI thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx


class NodeUnavailable(Exception):
    """Nothing (or nothing that is a SayIt node) answered."""


@dataclass
class Snapshot:
    """One poll of a node: what the tray status line, notifications and load window show."""

    health: dict[str, Any]
    queue: dict[str, Any] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

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


class NodeClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 3.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"X-SayIt-Client": "sayit-desktop"}  # marks a program, not a web page (see /api/shutdown)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # trust_env=False: a proxy from the environment must never see loopback calls.
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str) -> Any:
        try:
            resp = self._http.get(path)
        except httpx.HTTPError as exc:
            raise NodeUnavailable(f"{self.base_url}{path}: {exc}") from exc
        if resp.status_code != 200:
            raise NodeUnavailable(f"{self.base_url}{path}: HTTP {resp.status_code}")
        try:
            return resp.json()
        except ValueError as exc:
            raise NodeUnavailable(f"{self.base_url}{path}: not JSON") from exc

    def health(self) -> dict[str, Any]:
        data = self._get("/api/health")
        if not isinstance(data, dict) or data.get("status") != "ok" or "nodeId" not in data:
            raise NodeUnavailable(f"{self.base_url} is not a SayIt node")
        return data

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._get("/api/nodes").get("nodes") or [])

    def queue_status(self) -> dict[str, Any]:
        return dict(self._get("/api/queue-status"))

    def jobs(self) -> list[dict[str, Any]]:
        return list(self._get("/api/jobs").get("jobs") or [])

    def snapshot(self) -> Snapshot:
        """Health first (raises if the node is not there), then the rest, best effort."""
        snap = Snapshot(health=self.health())
        for name, call in (("queue", self.queue_status), ("jobs", self.jobs), ("nodes", self.nodes)):
            try:
                setattr(snap, name, call())
            except (NodeUnavailable, AttributeError, TypeError) as exc:
                snap.errors.append(str(exc))
        return snap

    def shutdown(self) -> bool:
        """Ask the node to stop gracefully; True if it accepted."""
        try:
            resp = self._http.post("/api/shutdown")
        except httpx.HTTPError:
            return False
        return resp.status_code in (200, 202, 204)
