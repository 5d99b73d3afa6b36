"""A large upload streams to disk: the node's memory stays flat while it comes in."""

from __future__ import annotations

import struct

from tests.conftest import PeakRss


def _big_wav(path, megabytes: int) -> None:
    """A valid 16 kHz mono 16-bit WAV of `megabytes` of silence, written without holding it in RAM."""
    data_bytes = megabytes * 1024 * 1024
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", data_bytes)
    with open(path, "wb") as fh:
        fh.write(header)
        block = b"\x00" * (1 << 20)
        for _ in range(megabytes):
            fh.write(block)


def test_200mb_upload_keeps_rss_flat(node_factory, tmp_path):
    node = node_factory(env={"SAYIT_MAX_UPLOAD_MB": "300"})
    path = tmp_path / "big.wav"
    _big_wav(path, 200)
    with PeakRss(node.proc.pid) as rss, node.client() as client, path.open("rb") as fh:
        response = client.post("/v1/audio/transcriptions", files={"file": ("big.wav", fh)},
                               data={"model": "whisper-1"})
    # 200 MB of 16 kHz audio is ~109 minutes: refused after streaming, before any decoding.
    assert response.status_code == 413 and response.json()["error"]["code"] == "audio_too_long"
    growth = rss.growth_mb
    print(f"RSS growth during a 200 MB upload: {growth:.1f} MB")
    assert growth < 50
