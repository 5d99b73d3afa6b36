"""The settings dialog: loads config.toml, validates, writes it back, marks env overrides."""

from __future__ import annotations

import tomllib

import pytest

from sayit_desktop.settings_dialog import SettingsDialog
from sayit_desktop.settings_store import ConfigFile
from sayit_desktop.supervisor import State


def read(node_env):
    return tomllib.loads(node_env.config.read_text(encoding="utf-8"))


@pytest.fixture
def dialog(qtbot, node_env):
    d = SettingsDialog(ConfigFile())
    qtbot.addWidget(d)
    return d


def test_loads_the_file(node_env, qtbot):
    node_env.config.write_text(
        'port = 4100\nmodel = "base"\nlanguage = "de"\nmax_concurrent_chunks = 3\nhost = "0.0.0.0"\n'
        'cluster_secret = "cluster-secret"\nredis_url = "redis://r:6379/0"\napi_keys = ["key-one-1", "key-two-2"]\n'
        '[desktop]\nstart_node_on_launch = false\nnotify_peers = false\n', encoding="utf-8")
    d = SettingsDialog(ConfigFile())
    qtbot.addWidget(d)
    assert d.port.value() == 4100
    assert d.model.currentText() == "base"
    assert d.language_value() == "de"
    assert d.chunks.value() == 3
    assert d.lan.isChecked() and not d.local_only.isChecked()
    assert d.secret.text() == "cluster-secret"
    assert d.redis_url_mode.isChecked() and d.redis_url.isEnabled()
    assert d.redis_url.text() == "redis://r:6379/0"
    assert d.api_keys.toPlainText() == "key-one-1\nkey-two-2"
    assert not d.start_on_launch.isChecked() and d.notify_jobs.isChecked() and not d.notify_peers.isChecked()
    assert d.values()["host"] == "0.0.0.0"


STRONG = "violin-ranger-crisply-outdoors-geology-unpaved-sixtieth"


def test_round_trip_through_the_file(dialog, node_env, qtbot):
    dialog.port.setValue(4242)
    dialog.model.setCurrentText("base")
    dialog.language.setCurrentIndex(dialog.language.findData("fr"))
    dialog.chunks.setValue(2)
    dialog.secret.setText(STRONG)
    dialog.redis_host.setChecked(True)
    dialog.api_keys.setPlainText("first-key-1\n\n  second-key-2  \n")
    dialog.notify_peers.setChecked(False)
    assert dialog.save() is True
    doc = read(node_env)
    assert doc["port"] == 4242
    assert doc["model"] == "base"
    assert doc["language"] == "fr"
    assert doc["max_concurrent_chunks"] == 2
    assert doc["cluster_secret"] == STRONG
    assert doc["host_redis"] is True and "redis_url" not in doc
    assert doc["api_keys"] == ["first-key-1", "second-key-2"]
    assert doc["desktop"]["notify_peers"] is False and doc["desktop"]["start_node_on_launch"] is True
    assert "host" not in doc  # defaults the user never set stay out of the file

    # A fresh dialog shows what was saved; switching back to defaults removes keys again.
    again = SettingsDialog(ConfigFile())
    qtbot.addWidget(again)
    assert again.values() == dialog.values()
    again.language.setCurrentIndex(0)  # Automatic
    again.secret.clear()
    again.redis_auto.setChecked(True)
    again.api_keys.clear()
    assert again.save()
    doc = read(node_env)
    for gone in ("language", "cluster_secret", "redis_url", "api_keys"):
        assert gone not in doc
    assert doc["host_redis"] is False
    assert doc["port"] == 4242


def test_lan_choice_writes_the_wildcard_host(dialog, node_env):
    dialog.lan.setChecked(True)
    assert dialog.save()
    assert read(node_env)["host"] == "0.0.0.0"
    dialog.local_only.setChecked(True)
    assert dialog.save()
    assert read(node_env)["host"] == "127.0.0.1"


def test_invalid_input_is_refused_and_nothing_is_written(dialog, node_env):
    before = node_env.config.read_text()
    dialog.api_keys.setPlainText("has,comma-key")
    dialog.redis_url_mode.setChecked(True)
    dialog.redis_url.setText("http://not-redis")
    dialog.secret.setText("short")
    assert dialog.save() is False
    assert set(dialog.errors) == {"api_keys", "redis_url", "cluster_secret"}
    assert "red" in dialog.redis_url.styleSheet() or "#d0312d" in dialog.redis_url.styleSheet()
    assert "Redis URL" in dialog.error_label.text()
    assert node_env.config.read_text() == before
    dialog.buttons.accepted.emit()  # Save button: stays open
    assert dialog.result() == 0


def test_weak_secret_refused_generated_secret_accepted(dialog, node_env):
    dialog.secret.setText("correct-horse-battery-staple")  # 8+ characters, no spaces, but guessable
    assert dialog.save() is False
    assert "too easy to guess" in dialog.errors["cluster_secret"] and "Generate" in dialog.errors["cluster_secret"]
    assert "cluster_secret" not in read(node_env)
    dialog.generate_secret_button.click()
    generated = dialog.secret.text()
    assert len(generated.split("-")) == 7 and dialog.show_secret.isChecked()
    assert dialog.save() is True
    assert read(node_env)["cluster_secret"] == generated


def test_english_only_model_refuses_another_language(dialog):
    dialog.model.setCurrentText("tiny.en")
    dialog.language.setCurrentIndex(dialog.language.findData("de"))
    assert not dialog.save()
    assert "English" in dialog.errors["language"]


def test_typed_language_code(dialog):
    dialog.model.setCurrentText("base")
    dialog.language.setEditText("haw")
    assert dialog.language_value() == "haw"
    assert dialog.save()


def test_generate_key(dialog):
    dialog.generate_key()
    dialog.generate_key()
    keys = dialog.values()["api_keys"]
    assert len(keys) == 2 and keys[0] != keys[1] and all(len(k) > 20 for k in keys)
    assert dialog.save()


def test_environment_overrides_are_marked(node_env, monkeypatch, qtbot):
    monkeypatch.setenv("PORT", "5999")
    monkeypatch.setenv("SAYIT_API_KEYS", "from-env-key")
    d = SettingsDialog(ConfigFile())
    qtbot.addWidget(d)
    assert not d.markers["port"].isHidden()
    assert "PORT=5999" in d.markers["port"].text()
    assert not d.markers["api_keys"].isHidden()
    assert "from-env-key" not in d.markers["api_keys"].text()
    assert d.markers["model"].isHidden()
    assert d.port.value() == node_env.port  # the dialog edits the file's value


class FakeSupervisor:
    def __init__(self, state):
        self.state = state
        self.cwd = None
        self.restarts = 0

    def restart(self):
        self.restarts += 1


@pytest.mark.parametrize("state,answer,restarts", [
    (State.RUNNING, True, 1), (State.RUNNING, False, 0), (State.STOPPED, True, 0)])
def test_offers_to_restart_a_running_node(node_env, qtbot, state, answer, restarts):
    sup = FakeSupervisor(state)
    d = SettingsDialog(ConfigFile(), sup)
    qtbot.addWidget(d)
    asked = []
    d.ask_restart = lambda changed: asked.append(changed) or answer
    d.port.setValue(d.port.value() + 1)
    assert d.save()
    assert sup.restarts == restarts
    assert asked == ([{"port"}] if state == State.RUNNING else [])
    asked.clear()
    assert d.save()  # nothing changed: no question
    assert asked == []


def test_find_automatically_turns_discovery_back_on(node_env, qtbot):
    node_env.config.write_text('discovery = false\nhost_redis = true\n', encoding="utf-8")
    d = SettingsDialog(ConfigFile())
    qtbot.addWidget(d)
    assert d.redis_host.isChecked()
    d.redis_auto.setChecked(True)
    assert d.save()
    doc = read(node_env)
    assert doc["discovery"] is True and doc["host_redis"] is False and "redis_url" not in doc


def test_redis_host_variable_marks_the_redis_url(node_env, monkeypatch, qtbot):
    monkeypatch.setenv("REDIS_HOST", "10.1.2.3")
    d = SettingsDialog(ConfigFile())
    qtbot.addWidget(d)
    assert not d.markers["redis_url"].isHidden() and "REDIS_HOST=10.1.2.3" in d.markers["redis_url"].text()
