"""The node as a supervised child process.

The tray runs `sayit-node serve` as a separate process with no setting flags (so the node reads
config.toml and the environment itself) and talks to it only over HTTP, on worker threads.
The child gets SAYIT_PARENT_PID so that it stops by itself if the tray dies, even by SIGKILL.

States: stopped -> starting -> running -> stopping -> stopped; a child that exits on its own
goes to error and is restarted with backoff. A node that already answers on the configured
port when the tray starts one is attached to (used, not fought); the tray does not own it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Callable, Sequence

from PySide6.QtCore import QObject, QTimer, Signal

from .background import Background
from .client import NodeClient, NodeUnavailable, Snapshot
from .settings_store import ConfigError, effective_settings, node_url
from .winproc import contain, is_windows, popen_options

log = logging.getLogger(__name__)

BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
HEALTHY_RESETS_BACKOFF = 30.0  # a node that ran this long before crashing restarts after BACKOFF[0]
CONSOLE_LOG = "node-console.log"
CONSOLE_LOG_MAX = 5 * 1024 * 1024


class State(str, Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    ERROR = "error"


def default_command(*, frozen: bool | None = None, executable: str | None = None,
                    platform: str | None = None) -> list[str]:
    """How to run the node: this interpreter's `-m sayit_node serve`, or, in a frozen app (the
    PyInstaller bundle has no Python to run `-m` with), the `sayit-node` program beside it."""
    frozen = getattr(sys, "frozen", False) if frozen is None else frozen
    executable = executable or sys.executable
    if frozen:
        exe = Path(executable).with_name("sayit-node.exe" if is_windows(platform) else "sayit-node")
        return [str(exe), "serve"]
    return [executable, "-m", "sayit_node", "serve"]


def port_in_use(url_host: str, port: int, timeout: float = 0.5) -> bool:
    """Does something accept connections on the port? (Connects only; never binds.)"""
    host = url_host.strip("[]")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else ""


class Supervisor(QObject):
    state_changed = Signal(str)
    snapshot_ready = Signal(object)

    def __init__(
        self,
        *,
        command: Sequence[str] | None = None,
        cwd: str | Path | None = None,
        settings_loader: Callable = effective_settings,
        stop_timeout: float = 10.0,
        poll_interval: float = 1.0,
        fast_poll_interval: float = 0.25,
        backoff: Sequence[float] = BACKOFF,
        background: Background | None = None,
        parent: QObject | None = None,
        platform: str | None = None,
        popen: Callable[..., subprocess.Popen] = subprocess.Popen,
        kernel32=None,
    ) -> None:
        super().__init__(parent)
        self.command = list(command or default_command())
        self.cwd = str(cwd) if cwd is not None else None
        self.settings_loader = settings_loader
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self.fast_poll_interval = fast_poll_interval
        self.backoff = tuple(backoff)
        self.bg = background or Background(parent=self)
        self.platform = platform or sys.platform
        self.windows = is_windows(self.platform)
        self._popen = popen
        self._kernel32 = kernel32  # Windows: injected in tests
        self.job = None  # Windows: the kill-on-close Job Object holding the node

        self.state = State.STOPPED
        self.detail = "Node stopped"
        self.process: subprocess.Popen | None = None
        self.attached = False  # serving a node the tray did not start
        self.url: str | None = None
        self.port: int | None = None
        self.log_dir: Path | None = None
        self.client: NodeClient | None = None
        self.last_snapshot: Snapshot | None = None
        self.responding = True
        self.crashes = 0
        self.restart_at: float | None = None
        self.last_exit_code: int | None = None

        self._want_running = False
        self._attach_only = False
        self._restart_after_stop = False
        self._token = 0  # bumps on every start/stop so that late answers are dropped
        self._in_flight = False
        self._failures = 0
        self._running_since = 0.0
        self._stop_deadline = 0.0
        self._killed = False
        self._log_file = None

        self._tick_timer = QTimer(self)
        self._tick_timer.timeout.connect(self._tick)
        self._restart_timer = QTimer(self)
        self._restart_timer.setSingleShot(True)
        self._restart_timer.timeout.connect(self._auto_restart)

    # --- public ---------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def display_state(self) -> str:
        """One of the tray icon states: stopped, starting, idle, busy, error."""
        if self.state == State.RUNNING:
            if not self.responding or (self.last_snapshot and self.last_snapshot.degraded):
                return "error"
            return "busy" if self.last_snapshot and self.last_snapshot.busy else "idle"
        if self.state in (State.STARTING, State.STOPPING):
            return "starting"
        return self.state.value

    def start(self, *, attach_only: bool = False) -> None:
        """Attach to a node already on the configured port, or start one (unless
        `attach_only`, used when the app opens with "start the node" switched off)."""
        if self.state in (State.STARTING, State.RUNNING, State.STOPPING):
            if self.state == State.STOPPING:
                self._restart_after_stop = True
            return
        self._want_running = not attach_only
        self._attach_only = attach_only
        self._restart_timer.stop()
        self.restart_at = None
        if self.state != State.ERROR:
            self.crashes = 0
        try:
            settings = self.settings_loader()
        except ConfigError as exc:
            self._fail(f"Settings cannot be used: {exc}", restart=False)
            return
        self.url = node_url(settings)
        self.port = int(settings.port)
        self.log_dir = Path(settings.log_dir)
        api_key = settings.api_keys[0] if settings.api_keys else None
        if self.client is not None:
            self.client.close()
        self.client = NodeClient(self.url, api_key)
        self._token += 1
        token = self._token
        self.last_snapshot = None
        self._set_state(State.STARTING, f"Looking for a node at {self.url}…")
        client, host = self.client, self.url.split("//", 1)[1].rsplit(":", 1)[0]

        def probe():
            try:
                return ("node", client.health())
            except NodeUnavailable:
                return ("busy" if port_in_use(host, self.port) else "free", None)

        self.bg.submit(probe, lambda result, error: self._probed(token, result, error))

    def stop(self) -> None:
        """Stop gracefully (POST /api/shutdown, then SIGTERM), kill after `stop_timeout`."""
        self._want_running = False
        self._restart_after_stop = False
        self._restart_timer.stop()
        self.restart_at = None
        self._token += 1
        if self.state in (State.STOPPED, State.STOPPING):
            return
        if self.process is None and not (self.attached and self.state == State.RUNNING):
            # Nothing of ours runs (waiting for a restart, or still probing).
            self.attached = False
            self._set_state(State.STOPPED, "Node stopped")
            return
        self._stop_deadline = time.monotonic() + self.stop_timeout
        self._killed = False
        self._set_state(State.STOPPING, "Stopping the node…")
        self._schedule_tick(self.fast_poll_interval)
        client, proc = self.client, self.process

        def ask():
            return client.shutdown() if client is not None else False

        def asked(accepted, error):
            if accepted or proc is None or proc.poll() is not None:
                return
            self._terminate(proc)

        self.bg.submit(ask, asked)

    def restart(self) -> None:
        """Stop (if running) and start again, e.g. to apply new settings."""
        if self.state in (State.STOPPED, State.ERROR):
            self.start()
            return
        # An attached node is stopped through its API too; then the tray starts its own.
        self.stop()
        self._restart_after_stop = True

    def stop_now(self, timeout: float | None = None) -> None:
        """Blocking stop for the very end of the app (no event loop needed)."""
        self._want_running = False
        self._restart_timer.stop()
        self._tick_timer.stop()
        proc = self.process
        if proc is not None and proc.poll() is None:
            timeout = self.stop_timeout if timeout is None else timeout
            accepted = False
            if self.client is not None:
                try:
                    accepted = self.client.shutdown()
                except Exception:
                    accepted = False
            if not accepted:
                self._terminate(proc)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("node %s did not stop within %.0f s; killing it", proc.pid, timeout)
                proc.kill()
                proc.wait(5)
        self._cleanup_process()
        self.bg.close()
        if self.client is not None:
            self.client.close()
        self.state = State.STOPPED

    # --- internals ------------------------------------------------------------------------
    def _set_state(self, state: State, detail: str) -> None:
        changed = state != self.state or detail != self.detail
        self.state = state
        self.detail = detail
        if state == State.RUNNING:
            self._schedule_tick(self.poll_interval)
        elif state in (State.STARTING, State.STOPPING):
            self._schedule_tick(self.fast_poll_interval)
        else:
            self._tick_timer.stop()
        if changed:
            log.info("node state: %s (%s)", state.value, detail)
            self.state_changed.emit(state.value)

    def _schedule_tick(self, seconds: float) -> None:
        ms = max(10, int(seconds * 1000))
        if not self._tick_timer.isActive() or self._tick_timer.interval() != ms:
            self._tick_timer.start(ms)

    def _probed(self, token: int, result, error) -> None:
        if token != self._token or self.state != State.STARTING:
            return
        kind, health = result if error is None else ("free", None)
        if kind == "node":
            self.attached = True
            self.process = None
            self._became_healthy(health)
            return
        if self._attach_only:
            self._set_state(State.STOPPED, "Node stopped")
            return
        if kind == "busy":
            self._fail(f"Port {self.port} is used by another program; choose another port in Settings.",
                       restart=True)
            return
        self._spawn()

    def _spawn(self) -> None:
        self.attached = False
        env = os.environ.copy()
        env["SAYIT_PARENT_PID"] = str(os.getpid())
        env.setdefault("PYTHONUNBUFFERED", "1")
        # POSIX: own session (a Ctrl+C meant for the tray reaches the node only through the
        # tray). Windows: no console window, own process group, and a Job Object below.
        kwargs = popen_options(self.platform)
        out = subprocess.DEVNULL
        if self.log_dir is not None:
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                path = self.log_dir / CONSOLE_LOG
                mode = "wb" if path.exists() and path.stat().st_size > CONSOLE_LOG_MAX else "ab"
                self._log_file = open(path, mode)
                self._log_file.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting node: "
                                     f"{' '.join(self.command)}\n".encode())
                self._log_file.flush()
                out = self._log_file
            except OSError as exc:
                log.warning("cannot write the node's console log: %s", exc)
        try:
            self.process = self._popen(self.command, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, **kwargs)
        except OSError as exc:
            self._cleanup_process()
            self._fail(f"Cannot start the node: {exc}", restart=False)
            return
        self.job = contain(self.process, platform=self.platform, kernel32=self._kernel32)
        log.info("started node pid %s: %s", self.process.pid, self.command)
        self._set_state(State.STARTING, "Starting the node (loading the model)…")

    def _became_healthy(self, health: dict) -> None:
        self._running_since = time.monotonic()
        self._failures = 0
        self.responding = True
        who = "attached to the node" if self.attached else "node"
        self._set_state(State.RUNNING, f"Running ({who} {health.get('name', '')} at {self.url})")
        self._poll()

    def _tick(self) -> None:
        proc = self.process
        if proc is not None:
            code = proc.poll()
            if code is not None:
                self._exited(code)
                return
        if self.state == State.STOPPING:
            if proc is None:  # an attached node: wait until it stops answering
                self._poll()
            elif time.monotonic() > self._stop_deadline and not self._killed:
                log.warning("node %s did not stop within %.0f s; killing it", proc.pid, self.stop_timeout)
                self._killed = True
                proc.kill()
            if proc is None and time.monotonic() > self._stop_deadline:
                self.attached = False
                self._fail(f"The node at {self.url} did not stop; it was not started by SayIt.",
                           restart=False)
            return
        if self.state in (State.STARTING, State.RUNNING):
            if (self.state == State.RUNNING and self.crashes and self._running_since
                    and time.monotonic() - self._running_since > HEALTHY_RESETS_BACKOFF):
                self.crashes = 0
            if self.state == State.STARTING and proc is None:
                return  # still probing
            self._poll()

    def _poll(self) -> None:
        if self._in_flight or self.client is None:
            return
        self._in_flight = True
        token, client = self._token, self.client
        starting = self.state == State.STARTING
        call = client.health if starting else client.snapshot
        self.bg.submit(call, lambda result, error: self._polled(token, starting, result, error))

    def _polled(self, token: int, starting: bool, result, error) -> None:
        self._in_flight = False
        if token != self._token:
            return
        if self.state == State.STARTING:
            if error is None and starting:
                if self.process is not None and self.process.poll() is None:
                    self._became_healthy(result)
            return
        if self.state == State.STOPPING:
            if error is not None and self.process is None:
                self.attached = False
                self._set_state(State.STOPPED, "Node stopped")
                self._after_stopped()
            return
        if self.state != State.RUNNING or starting:
            return
        if error is not None:
            self._failures += 1
            if self.attached and self._failures >= 3:
                self.attached = False
                self._set_state(State.STOPPED, f"The node at {self.url} went away")
                return
            if self._failures >= 3 and self.responding:
                self.responding = False
                self._set_state(State.RUNNING, "The node is not responding")
            return
        self._failures = 0
        if not self.responding:
            self.responding = True
            self._set_state(State.RUNNING, f"Running (node at {self.url})")
        was = (self.last_snapshot.busy, self.last_snapshot.degraded) if self.last_snapshot else None
        self.last_snapshot = result
        self.snapshot_ready.emit(result)
        if was != (result.busy, result.degraded):
            self.state_changed.emit(self.state.value)

    def _exited(self, code: int) -> None:
        proc = self.process
        self.last_exit_code = code
        self._cleanup_process()
        if self.state == State.STOPPING or not self._want_running:
            log.info("node %s exited with code %s", proc.pid if proc else "?", code)
            self._set_state(State.STOPPED, "Node stopped")
            self._after_stopped()
            return
        why = f"signal {-code}" if code < 0 else f"code {code}"
        last = _tail(self.log_dir / CONSOLE_LOG) if self.log_dir else ""
        detail = f"The node exited unexpectedly ({why})" + (f": {last}" if last else "")
        self._fail(detail, restart=True)

    def _after_stopped(self) -> None:
        if self._restart_after_stop:
            self._restart_after_stop = False
            self.start()

    def _fail(self, detail: str, *, restart: bool) -> None:
        self._token += 1
        self._in_flight = False
        self._running_since = 0.0
        if restart and self._want_running:
            delay = self.backoff[min(self.crashes, len(self.backoff) - 1)]
            self.crashes += 1
            self.restart_at = time.monotonic() + delay
            self._restart_timer.start(int(delay * 1000))
            detail = f"{detail} — restarting in {delay:g} s"
        else:
            self._want_running = False
            self.restart_at = None
        self._set_state(State.ERROR, detail)

    def _auto_restart(self) -> None:
        self.restart_at = None
        if self._want_running and self.state == State.ERROR:
            self.start()

    def _terminate(self, proc: subprocess.Popen) -> None:
        if proc.poll() is not None:
            return
        if self.windows:
            # No SIGTERM on Windows (terminate() is TerminateProcess), and a node started without
            # a console gets no Ctrl+Break: the graceful path was HTTP; kill at the deadline.
            return
        try:
            proc.terminate()
        except OSError:
            pass

    def _cleanup_process(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(0)
            except subprocess.TimeoutExpired:
                pass
        self.process = None
        if self.job is not None:  # kills whatever the node left in its job
            self.job.close()
            self.job = None
        if self._log_file is not None:
            try:
                self._log_file.close()
            except OSError:
                pass
            self._log_file = None
