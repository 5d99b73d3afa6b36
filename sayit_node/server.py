"""Run a node under uvicorn (`serve`) or as a worker-only process (`worker`): logging, graceful
stop, parent watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import signal
import sys

import psutil
import uvicorn

from .app import create_app
from .config import Settings
from .node import Node

log = logging.getLogger("sayit_node")


def setup_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Logs go to stdout and to a rotating file in the user log directory."""
    root = logging.getLogger()
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # discovery health checks every second
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not any(getattr(h, "_sayit", False) for h in root.handlers):
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(fmt)
        console._sayit = True
        root.addHandler(console)
        try:
            settings.log_dir.mkdir(parents=True, exist_ok=True)
            file = logging.handlers.RotatingFileHandler(
                settings.log_dir / "sayit-node.log", maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8"
            )
            file.setFormatter(fmt)
            file._sayit = True
            root.addHandler(file)
        except OSError as exc:
            log.warning("cannot write logs to %s: %s", settings.log_dir, exc)


async def _watch_parent(pid: int, stop) -> None:
    """Stop the node when the process that started it (the tray app) is gone."""
    while True:
        await asyncio.sleep(1.0)
        try:
            alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if not alive:
            log.warning("parent process %d is gone; stopping", pid)
            stop()
            return


def serve(settings: Settings) -> None:
    setup_logging(settings)
    node = Node(settings)
    server: uvicorn.Server | None = None

    def request_shutdown() -> None:
        if server is not None:
            server.should_exit = True

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await node.start()
        watchdog = None
        if settings.parent_pid:
            watchdog = asyncio.create_task(_watch_parent(settings.parent_pid, request_shutdown))
        try:
            yield
        finally:
            if watchdog:
                watchdog.cancel()
            await node.stop()

    app = create_app(node, request_shutdown=request_shutdown, lifespan=[lifespan])
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False,
        timeout_graceful_shutdown=5, lifespan="on",
    )
    server = uvicorn.Server(config)
    log.info("SayIt node on http://%s:%d (API docs at /schema)", settings.host, settings.port)
    server.run()
    if not server.started:
        sys.exit(1)


def run_worker(settings: Settings) -> None:
    """A worker-only process: pulls chunks from the cluster's Redis, serves no API.

    Scale these (compose replicas, a Kubernetes HPA) beside one or more full nodes. SIGTERM or
    Ctrl-C hands the running chunks back to the queue and exits.
    """
    setup_logging(settings)

    async def main() -> int:
        node = Node(settings, role="worker")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still raises
                loop.add_signal_handler(sig, stop.set)
        try:
            await node.start()
        except RuntimeError as exc:
            log.error("%s", exc)
            return 2
        watchdog = asyncio.create_task(_watch_parent(settings.parent_pid, stop.set)) if settings.parent_pid else None
        try:
            await stop.wait()
        finally:
            if watchdog:
                watchdog.cancel()
            await node.stop()
        return 0

    sys.exit(asyncio.run(main()))
