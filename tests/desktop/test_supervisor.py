"""The supervisor with stand-in child processes: crash backoff, stop timeouts, port clashes.
(Everything about the real node is in test_real_node.py.)"""

from __future__ import annotations

import socket
import sys
import time

import psutil

from sayit_desktop.supervisor import State

from .helpers import write_config


def test_a_child_that_keeps_crashing_is_restarted_with_growing_backoff(qtbot, node_env, supervisors):
    script = "import sys; print('model not found: nothing-here', flush=True); sys.exit(3)"
    sup = supervisors(command=[sys.executable, "-c", script], backoff=(0.2, 0.6, 1.2))
    errors: list[tuple[float, str]] = []
    sup.state_changed.connect(lambda s: s == "error" and errors.append((time.monotonic(), sup.detail)))
    sup.start()
    qtbot.waitUntil(lambda: len(errors) >= 3, timeout=15000)
    assert "code 3" in errors[0][1]
    assert "model not found: nothing-here" in errors[0][1]  # the console log's last line
    assert "restarting in 0.2 s" in errors[0][1]
    assert "restarting in 0.6 s" in errors[1][1]
    assert "restarting in 1.2 s" in errors[2][1]
    assert errors[2][0] - errors[1][0] > errors[1][0] - errors[0][0]  # it backs off
    assert sup.crashes >= 3
    sup.stop()
    assert sup.state == State.STOPPED and sup.restart_at is None
    count = sup.crashes
    qtbot.wait(1500)
    assert sup.state == State.STOPPED and sup.crashes == count  # no restart after Stop


def test_stop_kills_a_child_that_ignores_sigterm(qtbot, node_env, supervisors):
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('up', flush=True); time.sleep(120)")
    sup = supervisors(command=[sys.executable, "-c", script], stop_timeout=1.0)
    sup.start()
    qtbot.waitUntil(lambda: sup.pid is not None, timeout=5000)
    pid = sup.pid
    qtbot.wait(300)  # let it install its handler
    started = time.monotonic()
    sup.stop()
    assert sup.state == State.STOPPING
    qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=10000)
    took = time.monotonic() - started
    assert 0.9 < took < 5
    assert sup.last_exit_code == -9
    assert not psutil.pid_exists(pid)


def test_stop_while_starting_uses_sigterm(qtbot, node_env, supervisors):
    script = "import time; print('loading', flush=True); time.sleep(120)"
    sup = supervisors(command=[sys.executable, "-c", script], stop_timeout=20.0)
    sup.start()
    qtbot.waitUntil(lambda: sup.pid is not None, timeout=5000)
    assert sup.state == State.STARTING
    sup.stop()
    qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=5000)
    assert sup.last_exit_code == -15  # SIGTERM, well before the kill deadline


def test_a_port_taken_by_another_program_is_an_error(qtbot, node_env, supervisors):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        write_config(node_env.config, f"port = {other.getsockname()[1]}\n")
        sup = supervisors(command=[sys.executable, "-c", "raise SystemExit(9)"], backoff=(30,))
        sup.start()
        qtbot.waitUntil(lambda: sup.state == State.ERROR, timeout=5000)
        assert "used by another program" in sup.detail
        assert sup.pid is None  # it did not start a node to fight over the port
        sup.stop()


def test_unusable_settings_are_an_error_without_restart(qtbot, node_env, supervisors):
    write_config(node_env.config, "port = 'not a number'\n")
    sup = supervisors(command=[sys.executable, "-c", "raise SystemExit(9)"])
    sup.start()
    assert sup.state == State.ERROR
    assert "Settings cannot be used" in sup.detail
    assert sup.restart_at is None and sup.pid is None


def test_attach_only_with_no_node_stays_stopped(qtbot, node_env, supervisors):
    sup = supervisors(command=[sys.executable, "-c", "raise SystemExit(9)"])
    sup.start(attach_only=True)
    assert sup.state == State.STARTING
    qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=5000)
    assert sup.pid is None and not sup.attached
