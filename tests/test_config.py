"""Settings sources and their order: CLI > env > .env > config.toml > defaults."""

from __future__ import annotations

import pytest

from sayit_node.config import SettingsError, load_settings


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("PORT", "HOST", "ALLOWED_ORIGINS", "MAX_CONCURRENT_CHUNKS", "WORKER_ID", "WHISPER_CACHE_DIR",
                 "SAYIT_MODEL", "SAYIT_LANGUAGE", "SAYIT_API_KEYS", "SAYIT_MAX_DURATION_MINUTES", "SAYIT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.toml"
    monkeypatch.setenv("SAYIT_CONFIG_FILE", str(config))
    return config


def test_defaults(clean_env):
    s = load_settings()
    assert (s.host, s.port, s.model, s.max_duration_minutes, s.retention_hours) == ("127.0.0.1", 3000, "tiny.en", 30, 24)
    assert s.api_keys == [] and s.language is None


def test_source_order(clean_env, monkeypatch, tmp_path):
    clean_env.write_text('port = 4000\nmodel = "base"\nlanguage = "de"\nmax_concurrent_chunks = 3\n'
                         '[desktop]\nstart_node = true\n')  # other programs' tables are skipped
    assert load_settings().port == 4000 and load_settings().max_concurrent_chunks == 3
    (tmp_path / ".env").write_text("PORT=4500\nSAYIT_MODEL=small\n")
    s = load_settings()
    assert (s.port, s.model, s.language) == (4500, "small", "de")
    monkeypatch.setenv("PORT", "5000")
    assert load_settings().port == 5000
    assert load_settings(port=6000, model="cli").port == 6000
    assert load_settings(port=6000, model="cli").model == "cli"


def test_lists_are_comma_separated_in_env(clean_env, monkeypatch):
    monkeypatch.setenv("SAYIT_API_KEYS", "one, two,,three")
    monkeypatch.setenv("ALLOWED_ORIGINS", "http://a.example,http://b.example")
    s = load_settings()
    assert s.api_keys == ["one", "two", "three"]
    assert s.allowed_origins == ["http://a.example", "http://b.example"]


def test_unrelated_env_names_do_not_leak(clean_env, monkeypatch):
    # The locale's LANGUAGE and a generic MODEL must not become SayIt settings.
    monkeypatch.setenv("LANGUAGE", "en_US:en")
    monkeypatch.setenv("MODEL", "other")
    s = load_settings()
    assert s.language is None and s.model == "tiny.en"


def test_bad_values_are_rejected(clean_env, monkeypatch):
    monkeypatch.setenv("PORT", "not-a-port")
    with pytest.raises(SettingsError, match=r"^invalid setting PORT='not-a-port': .*integer"):
        load_settings()


def test_config_file_problems_are_named(clean_env):
    clean_env.write_text('prot = 4000\n[desktop]\nstart_node = true\n')
    with pytest.raises(SettingsError, match=r"unknown setting 'prot' \(did you mean 'port'\?\)"):
        load_settings()
    clean_env.write_text('port = "4000\n')
    with pytest.raises(SettingsError, match=r"^cannot read .*config.toml: "):
        load_settings()


def test_chunks_in_flight_standalone_federated_and_set(clean_env, monkeypatch):
    """A batching engine standalone holds two batches (a long job is split evenly over its
    workers); in a cluster one batch (the rest of a job is for the other nodes); an explicit
    MAX_CONCURRENT_CHUNKS wins. (The engine here only states its batch; the policy is the node's.)"""
    from types import SimpleNamespace

    from sayit_node.node import Node

    batching = SimpleNamespace(slots=8, batch_size=8)
    single = SimpleNamespace(slots=2, batch_size=1)
    node = Node(load_settings(), engine=batching)
    assert node.slots == 16
    node.registry = object()  # federated: the cluster's Redis is the job store
    assert node.slots == 8
    assert Node(load_settings(), engine=single).slots == 2
    monkeypatch.setenv("MAX_CONCURRENT_CHUNKS", "3")
    assert Node(load_settings(), engine=batching).slots == 3
