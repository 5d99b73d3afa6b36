"""`sayit-node transcribe` in-process and against a server; `status` and `peers`; user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.speech import wer


def _cli(*args, tmp_path, env=None):
    return subprocess.run(
        [sys.executable, "-m", "sayit_node", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SAYIT_CONFIG_FILE": str(tmp_path / "none.toml"),
             "SAYIT_LOG_DIR": str(tmp_path / "logs"), "WHISPER_CACHE_DIR": str(tmp_path / "models"),
             "COLUMNS": "80", **(env or {})},
    )


def assert_user_error(result, *words: str) -> None:
    """One clear line on stderr, a non-zero exit, no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_transcribe_in_process_prints_and_writes(tmp_path, short_speech, minute_speech):
    short, short_text = short_speech
    result = _cli("transcribe", str(short), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert wer(short_text, result.stdout) < 20  # the transcript goes to stdout by default
    assert not (short.parent / "short.txt").exists()

    minute, _ = minute_speech
    result = _cli("transcribe", str(short), str(minute), "--format", "srt", "--output-dir", str(tmp_path / "out"),
                  tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    srt = (tmp_path / "out" / "minute.srt").read_text()
    assert srt.startswith("1\n00:00:00,") and srt.count(" --> ") >= 4
    assert (tmp_path / "out" / "short.srt").exists() and result.stdout == ""


def test_transcribe_reports_bad_files(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    assert_user_error(_cli("transcribe", str(bad), tmp_path=tmp_path), "notes.wav", "not a readable audio file")
    missing = _cli("transcribe", str(tmp_path / "missing.wav"), tmp_path=tmp_path)
    assert_user_error(missing, "no such file", "missing.wav")


@pytest.mark.parametrize("case", ["no-node", "no-scheme", "malformed-toml", "bad-value", "unknown-key",
                                  "missing-file", "not-sayit", "bad-port", "bad-toml-value", "serve-unknown-key"])
def test_user_errors_are_one_line(tmp_path, case, short_speech):
    config = tmp_path / "config.toml"
    env = {"SAYIT_CONFIG_FILE": str(config)}
    if case == "no-node":
        result = _cli("status", "--server", "http://127.0.0.1:9", tmp_path=tmp_path, env=env)
        assert_user_error(result, "no node at http://127.0.0.1:9")
    elif case == "no-scheme":
        result = _cli("transcribe", str(short_speech[0]), "--server", "127.0.0.1:3000", tmp_path=tmp_path, env=env)
        assert_user_error(result, "127.0.0.1:3000", "http://")
    elif case == "malformed-toml":
        config.write_text('port = 3000\nmodel = "base\n')
        assert_user_error(_cli("peers", tmp_path=tmp_path, env=env), "cannot read", str(config))
    elif case == "bad-value":
        result = _cli("status", tmp_path=tmp_path, env={**env, "PORT": "abc"})
        assert_user_error(result, "PORT", "'abc'")
    elif case == "unknown-key":
        # The tray's [desktop] table is allowed; a misspelt top-level key is named.
        config.write_text('prot = 3001\n\n[desktop]\nnotify_jobs = true\n')
        result = _cli("transcribe", str(short_speech[0]), tmp_path=tmp_path, env=env)
        assert_user_error(result, "unknown setting 'prot'", "did you mean 'port'")
    elif case == "missing-file":
        assert_user_error(_cli("transcribe", "nothing.wav", tmp_path=tmp_path, env=env), "no such file: nothing.wav")
    elif case == "not-sayit":  # some other web server answers at --server
        server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"], cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            port = server.stdout.readline().split(" port ")[1].split()[0]
            for command in ("status", "peers"):
                result = _cli(command, "--server", f"http://127.0.0.1:{port}", tmp_path=tmp_path, env=env)
                assert_user_error(result, "HTTP 404", "is a SayIt node listening there?")
        finally:
            server.kill()
            server.wait()
    elif case == "bad-port":
        assert_user_error(_cli("status", "--server", "http://localhost:abc", tmp_path=tmp_path, env=env),
                          "not a URL", "port")
    elif case == "bad-toml-value":  # a value of the wrong type in the file, and one out of range
        config.write_text('port = "abc"\n')
        assert_user_error(_cli("status", tmp_path=tmp_path, env=env), "PORT", "'abc'")
        config.write_text('max_upload_mb = -5\n')
        assert_user_error(_cli("serve", tmp_path=tmp_path, env=env), "SAYIT_MAX_UPLOAD_MB", "greater than 0")
    elif case == "serve-unknown-key":  # the node itself, not only the client commands
        config.write_text('modle = "base"\n')
        assert_user_error(_cli("serve", tmp_path=tmp_path, env=env), "unknown setting 'modle'", "'model'")


def test_against_a_server_with_the_api_key_from_settings(tmp_path, node_factory, short_speech):
    key = "cli-test-key-123"
    node = node_factory(env={"SAYIT_API_KEYS": key})
    path, text = short_speech
    config = tmp_path / "config.toml"
    config.write_text(f'api_keys = ["{key}"]\n')  # the same settings file a node would read
    env = {"SAYIT_CONFIG_FILE": str(config)}

    result = _cli("transcribe", str(path), "--server", node.url, tmp_path=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert wer(text, result.stdout) < 20

    out = tmp_path / "short.json"
    result = _cli("transcribe", str(path), "--server", node.url, "--format", "verbose_json", "-o", str(out),
                  tmp_path=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    body = json.loads(out.read_text())
    assert wer(text, body["text"]) < 20 and body["segments"]

    status = _cli("status", "--server", node.url, "--json", tmp_path=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["queue"]["jobs"]["completed"] == 2
    table = _cli("status", "--server", node.url, tmp_path=tmp_path, env=env)
    assert table.returncode == 0 and "2 completed" in table.stdout
    peers = _cli("peers", "--server", node.url, tmp_path=tmp_path, env=env)
    assert peers.returncode == 0 and "* this node" in peers.stdout and node.url in peers.stdout
    for listing in (table.stdout, peers.stdout):
        assert max(len(line) for line in listing.splitlines()) <= 80, listing
    assert json.loads(_cli("peers", "--server", node.url, "--json", tmp_path=tmp_path, env=env).stdout)[0]["self"]

    wrong = _cli("transcribe", str(path), "--server", node.url, "--api-key", "wrong-key-456", tmp_path=tmp_path)
    assert_user_error(wrong, "short.wav")
