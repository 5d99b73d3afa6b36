"""`sayit-node transcribe` in-process and against a server; `sayit-node status`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.speech import wer


def _cli(*args, tmp_path, env=None):
    return subprocess.run(
        [sys.executable, "-m", "sayit_node", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SAYIT_CONFIG_FILE": str(tmp_path / "none.toml"),
             "SAYIT_LOG_DIR": str(tmp_path / "logs"), "WHISPER_CACHE_DIR": str(tmp_path / "models"), **(env or {})},
    )


def test_transcribe_in_process_writes_beside_input_and_into_dir(tmp_path, short_speech, minute_speech):
    short, short_text = short_speech
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.wav").write_bytes(short.read_bytes())
    result = _cli("transcribe", str(inputs / "a.wav"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert wer(short_text, (inputs / "a.txt").read_text()) < 20

    minute, _ = minute_speech
    result = _cli("transcribe", str(short), str(minute), "--format", "srt", "--output-dir", str(tmp_path / "out"),
                  tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    srt = (tmp_path / "out" / "minute.srt").read_text()
    assert srt.startswith("1\n00:00:00,") and srt.count(" --> ") >= 4
    assert (tmp_path / "out" / "short.srt").exists()


def test_transcribe_reports_bad_files(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    result = _cli("transcribe", str(bad), tmp_path=tmp_path)
    assert result.returncode == 1 and "not a readable audio file" in result.stderr
    missing = _cli("transcribe", str(tmp_path / "missing.wav"), tmp_path=tmp_path)
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_transcribe_against_server_and_status(tmp_path, node_factory, short_speech):
    node = node_factory()
    path, text = short_speech
    result = _cli("transcribe", str(path), "--server", node.url, "--format", "verbose_json",
                  "--output-dir", str(tmp_path / "out"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    body = json.loads((tmp_path / "out" / "short.json").read_text())
    assert wer(text, body["text"]) < 20 and body["segments"]
    status = _cli("status", "--server", node.url, tmp_path=tmp_path)
    assert status.returncode == 0
    assert json.loads(status.stdout)["queue"]["jobs"]["completed"] == 1
    down = _cli("status", "--server", "http://127.0.0.1:9", tmp_path=tmp_path)
    assert down.returncode == 1
