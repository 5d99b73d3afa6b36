"""The tray shows a node that lost its cluster's Redis (a real node and redis-server; the
simulated engine, since no transcription is involved)."""

from __future__ import annotations

from sayit_desktop.icons import state_icon
from sayit_desktop.settings_store import ConfigFile
from sayit_desktop.supervisor import State
from sayit_desktop.tray import Tray
from tests.redis_fixture import start_redis

from .helpers import healthy, start_node_process, wait_for


def test_the_tray_shows_the_cluster_outage_and_its_end(qtbot, node_env, supervisors, spawned, tmp_path):
    redis = start_redis(tmp_path / "redis", appendonly=True, password="pw")
    try:
        node = start_node_process(node_env.port, node_env.root / "node.log", REDIS_URL=redis.url,
                                  SAYIT_ENGINE="simulated")
        spawned.append(node)
        assert wait_for(lambda: healthy(node_env.port), 60)
        sup = supervisors(poll_interval=0.25)
        tray = Tray(sup, config=ConfigFile(), autostart=None, opener=lambda url: None, quit_app=lambda: None)
        sup.start()
        qtbot.waitUntil(lambda: sup.state == State.RUNNING and sup.last_snapshot is not None, timeout=10000)
        assert sup.display_state == "idle"

        redis.stop()
        qtbot.waitUntil(lambda: tray.status_action.text() == "Degraded — cluster unavailable", timeout=15000)
        assert f"127.0.0.1:{redis.port}" in tray.icon.toolTip()
        assert sup.display_state == "error"
        assert tray.icon.icon().cacheKey() == state_icon("error").cacheKey()
        assert [m for m in tray.messages if m[0] == "SayIt cluster unavailable"], tray.messages

        redis.start()
        qtbot.waitUntil(lambda: tray.status_action.text().startswith("Running"), timeout=15000)
        assert sup.display_state == "idle"
        assert len([m for m in tray.messages if m[0] == "SayIt cluster unavailable"]) == 1, "told once per outage"
        sup.stop()
        qtbot.waitUntil(lambda: sup.state == State.STOPPED, timeout=15000)
    finally:
        redis.stop()
