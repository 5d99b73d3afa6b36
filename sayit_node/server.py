"""Run a node under uvicorn (`serve`) or as a worker-only process (`worker`): logging, graceful
stop, parent watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
import signal
import sys
import threading

import psutil
import uvicorn

from .app import create_app
from .config import Settings
from .datadir import PRIVATE_UMASK, DataDirInUse, private_dir, private_file
from .federation.hosted_redis import RedisUnavailable
from .federation.link import StartupError
from .node import Node

log = logging.getLogger("sayit_node")


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Log files are created 0600 (they name files, peers and addresses), rotated ones too."""

    def _open(self):
        private_file(self.baseFilename)
        return super()._open()


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
            private_dir(settings.log_dir)
            file = _PrivateRotatingFileHandler(
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


FORCE_EXIT_SECONDS = 8.0  # after SIGTERM / Ctrl-C, whatever the node is still waiting for


class _ForceExit:
    """Armed by the first stop signal: if the process is still alive FORCE_EXIT_SECONDS later
    (a model still loading, an engine thread mid-chunk, a Redis that does not answer), exit."""

    def __init__(self, seconds: float = FORCE_EXIT_SECONDS) -> None:
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._exit)
            self._timer.daemon = True
            self._timer.start()

    def _exit(self) -> None:
        log.error("the node did not stop within %.0f s of the stop signal; exiting now", self.seconds)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(1)


def _on_stop_signals(loop: asyncio.AbstractEventLoop, callback) -> list[int]:
    """SIGTERM / SIGINT call `callback` on the loop (which wakes for them); returns the signals set."""
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, callback)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            with contextlib.suppress(ValueError):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(callback))
    return installed


async def _start_node(node: Node, force: _ForceExit) -> int | None:
    """Start the node; a stop signal cancels the start. None when up, else the exit code."""
    loop = asyncio.get_running_loop()
    start = asyncio.create_task(node.start(), name="sayit-start")
    stopped = False

    def on_signal() -> None:
        nonlocal stopped
        stopped = True
        force.arm()
        start.cancel()

    installed = _on_stop_signals(loop, on_signal)
    try:
        await start
        return None
    except asyncio.CancelledError:
        if not stopped:
            raise
        log.info("stopped while starting")
        code = 0
    except (StartupError, DataDirInUse, RedisUnavailable) as exc:
        log.error("%s", exc)  # one line that says what to set; no traceback
        code = 2
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    try:
        await asyncio.wait_for(node.stop(), timeout=FORCE_EXIT_SECONDS - 2)
    except Exception as exc:  # best effort: the start failed half-way
        log.warning("cleaning up after the failed start: %s", exc)
    return code


class _Server(uvicorn.Server):
    """uvicorn's server, plus the force-exit timer on its stop signals."""

    def __init__(self, config: uvicorn.Config, force: _ForceExit) -> None:
        super().__init__(config)
        self._force = force

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        self._force.arm()


def serve(settings: Settings) -> None:
    setup_logging(settings)
    os.umask(PRIVATE_UMASK)  # recordings, transcripts, the database and logs: owner only

    async def main() -> int:
        force = _ForceExit()
        node = Node(settings)
        code = await _start_node(node, force)
        if code is not None:
            return code
        server: _Server | None = None

        def request_shutdown() -> None:
            if server is not None:
                server.should_exit = True

        @contextlib.asynccontextmanager
        async def lifespan(_app):
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
        server = _Server(config, force)
        log.info("SayIt node on http://%s:%d (API reference at /schema)", settings.host, settings.port)
        try:
            await server.serve()
        finally:
            if node.state != "stopped":  # uvicorn gave up before its lifespan ran (port taken)
                await node.stop()
        return 0 if server.started else 1

    sys.exit(_run(main))


def _run(main) -> int:
    with asyncio.Runner() as runner:
        return runner.run(main())


def run_worker(settings: Settings) -> None:
    """A worker-only process: pulls chunks from the cluster's Redis, serves no API.

    Scale these (compose replicas, a Kubernetes HPA) beside one or more full nodes. SIGTERM or
    Ctrl-C hands the running chunks back to the queue and exits.
    """
    setup_logging(settings)
    os.umask(PRIVATE_UMASK)

    async def main() -> int:
        force = _ForceExit()
        node = Node(settings, role="worker")
        code = await _start_node(node, force)
        if code is not None:
            return code
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            force.arm()
            stop.set()

        _on_stop_signals(loop, on_signal)
        watchdog = asyncio.create_task(_watch_parent(settings.parent_pid, stop.set)) if settings.parent_pid else None
        try:
            await stop.wait()
        finally:
            if watchdog:
                watchdog.cancel()
            await node.stop()
        return 0

    sys.exit(_run(main))
