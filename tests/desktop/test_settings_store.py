"""config.toml read/write, environment overrides and validation."""

from __future__ import annotations

import tomllib

import pytest

from sayit_desktop.settings_store import (
    ConfigFile,
    DesktopSettings,
    dumps,
    effective_settings,
    env_overrides,
    node_url,
    redis_mode,
    validate,
)

GOOD = {
    "port": 3000, "host": "127.0.0.1", "model": "base", "language": "de",
    "max_concurrent_chunks": 2, "cluster_secret": None, "host_redis": False,
    "redis_url": None, "api_keys": None,
}


def test_dumps_round_trips_through_tomllib():
    doc = {
        "port": 4000, "model": "tiny.en", "ratio": 0.5, "on": True, "off": False,
        "keys": ["a,b", 'q"uote', "back\\slash", "tab\tnew\nline", "ünïcode"],
        "odd key": "x", "empty": [],
        "desktop": {"notify_jobs": False, "stop_timeout": 12.5, "nested": {"deep": 1}},
        "other": {"keep": "me"},
    }
    assert tomllib.loads(dumps(doc)) == doc


def test_write_merges_keeps_unknown_keys_and_removes_none(node_env):
    node_env.config.write_text(
        'port = 1234\nfuture_setting = "keep"\nlanguage = "fr"\n\n[other]\nx = 1\n\n[desktop]\nmine = "too"\n',
        encoding="utf-8")
    cfg = ConfigFile()
    assert cfg.path == node_env.config
    cfg.write({"port": 5555, "language": None, "api_keys": ["k1-aaaaaaaa"]},
              DesktopSettings(notify_peers=False))
    doc = tomllib.loads(node_env.config.read_text(encoding="utf-8"))
    assert doc["port"] == 5555
    assert "language" not in doc
    assert doc["api_keys"] == ["k1-aaaaaaaa"]
    assert doc["future_setting"] == "keep"
    assert doc["other"] == {"x": 1}
    assert doc["desktop"]["mine"] == "too"
    assert doc["desktop"]["notify_peers"] is False
    assert cfg.desktop().notify_peers is False and cfg.desktop().notify_jobs is True
    assert (node_env.config.stat().st_mode & 0o777) == 0o600


def test_node_reads_what_the_tray_writes(node_env):
    """The tray writes the file; the node's own settings loader sees the same values, and
    ignores the [desktop] table."""
    ConfigFile().write({"port": 4567, "model": "base", "language": "de", "max_concurrent_chunks": 3,
                        "api_keys": ["secret-key-1", "secret-key-2"], "cluster_secret": "cluster-pass",
                        "redis_url": "redis://127.0.0.1:6400/0", "host_redis": False},
                       DesktopSettings(start_node_on_launch=False))
    settings = effective_settings()
    assert settings.cluster_secret == "cluster-pass"
    assert settings.redis_url == "redis://127.0.0.1:6400/0" and settings.host_redis is False
    assert settings.port == 4567
    assert settings.model == "base"
    assert settings.language == "de"
    assert settings.max_concurrent_chunks == 3
    assert settings.api_keys == ["secret-key-1", "secret-key-2"]
    assert ConfigFile().desktop().start_node_on_launch is False


def test_environment_beats_the_file_and_is_reported(node_env, monkeypatch, tmp_path):
    ConfigFile().write({"port": 4567, "model": "base"})
    monkeypatch.setenv("PORT", "4999")
    monkeypatch.setenv("SAYIT_API_KEYS", "env-key-123")
    (tmp_path / ".env").write_text("SAYIT_MODEL=small\n", encoding="utf-8")
    overrides = env_overrides(cwd=tmp_path)
    assert overrides["port"].variable == "PORT" and overrides["port"].value == "4999"
    assert overrides["model"].source == ".env" and overrides["model"].value == "small"
    assert "env-key-123" not in overrides["api_keys"].describe()  # secrets are not shown
    assert "language" not in overrides
    settings = effective_settings()
    assert settings.port == 4999 and settings.model == "small"


def test_unrelated_variables_do_not_count_as_overrides(node_env, monkeypatch):
    monkeypatch.setenv("LANGUAGE", "en_US:en")  # the locale's, not SAYIT_LANGUAGE
    assert "language" not in env_overrides()


def test_unreadable_file_is_a_config_error(node_env):
    from sayit_desktop.settings_store import ConfigError

    node_env.config.write_text("port = [oops\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        ConfigFile().read()
    with pytest.raises(ConfigError):
        effective_settings()
    assert ConfigFile().desktop() == DesktopSettings()


def test_validate_accepts_good_values():
    assert validate(GOOD) == {}
    assert validate({**GOOD, "language": None, "cluster_secret": "violin-ranger-crisply-outdoors-geology-unpaved-sixtieth",
                     "redis_url": "redis://10.0.0.5:6379/0", "api_keys": ["abcdefgh1"]}) == {}


@pytest.mark.parametrize("change,field", [
    ({"port": 0}, "port"),
    ({"port": 70000}, "port"),
    ({"model": "  "}, "model"),
    ({"language": "english!"}, "language"),
    ({"model": "tiny.en", "language": "de"}, "language"),
    ({"max_concurrent_chunks": 0}, "max_concurrent_chunks"),
    ({"cluster_secret": "short"}, "cluster_secret"),
    ({"cluster_secret": "has a space"}, "cluster_secret"),
    ({"cluster_secret": "correct-horse-battery-staple"}, "cluster_secret"),  # guessable
    ({"redis_url": "http://x"}, "redis_url"),
    ({"redis_url": "redis://h:6379", "host_redis": True}, "redis_url"),
    ({"api_keys": ["a,b-cdefgh"]}, "api_keys"),
    ({"api_keys": ["short"]}, "api_keys"),
    ({"api_keys": ["same-key-1", "same-key-1"]}, "api_keys"),
])
def test_validate_rejects(change, field):
    errors = validate({**GOOD, **change})
    assert field in errors and errors[field]


def test_redis_mode_and_node_url():
    assert redis_mode({"host_redis": True}) == "host"
    assert redis_mode({"redis_url": "redis://x"}) == "url"
    assert redis_mode({}) == "auto"

    class S:
        port = 3000
        host = "0.0.0.0"

    assert node_url(S) == "http://127.0.0.1:3000"  # a LAN node is still asked over loopback
    S.host = "::"
    assert node_url(S) == "http://[::1]:3000"
    S.host = "127.0.0.1"
    assert node_url(S) == "http://127.0.0.1:3000"
