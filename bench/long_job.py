"""A 30-minute job on one node: peak RSS, and how long a 30 s upload takes meanwhile.

    .venv/bin/python bench/long_job.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import os
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import NodeProcess, PeakRss  # noqa: E402
from tests.speech import PARAGRAPHS, duration_of, long_speech, speak_paragraphs, wer  # noqa: E402


def transcribe_sync(url: str, path: Path) -> tuple[float, str]:
    started = time.monotonic()
    with path.open("rb") as fh:
        r = httpx.post(url + "/api/transcribe", files={"audio": fh}, data={"format": "text"}, timeout=600)
    r.raise_for_status()
    return time.monotonic() - started, r.text


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="sayit-long-"))
    try:
        base = speak_paragraphs(PARAGRAPHS, work / "base.wav")
        long_path, _ = long_speech(work / "long.wav", 29, base=base)
        short_path = speak_paragraphs(PARAGRAPHS[:2], work / "short.wav")
        short_text = " ".join(PARAGRAPHS[:2])
        node = NodeProcess(work / "node", {"MAX_CONCURRENT_CHUNKS": str(os.cpu_count() or 1)}).start()
        try:
            alone, _ = transcribe_sync(node.url, short_path)
            with PeakRss(node.proc.pid) as rss:
                started = time.monotonic()
                with long_path.open("rb") as fh:
                    job_id = httpx.post(node.url + "/api/transcribe", files={"audio": fh}, data={"async": "true"},
                                        timeout=600).json()["jobId"]
                while httpx.get(f"{node.url}/api/jobs/{job_id}").json()["completedChunks"] < 5:
                    time.sleep(0.1)
                beside, text = transcribe_sync(node.url, short_path)
                while httpx.get(f"{node.url}/api/jobs/{job_id}").json()["status"] != "completed":
                    time.sleep(0.2)
                long_wall = time.monotonic() - started
        finally:
            node.stop()
        audio = duration_of(long_path)
        print(f"\n30-minute job ({audio / 60:.1f} min) on one node, tiny.en, MAX_CONCURRENT_CHUNKS=cores\n")
        print("| metric | value |\n|---|---|")
        print(f"| long job wall time | {long_wall:.1f} s ({audio / long_wall:.1f} audio-s / wall-s) |")
        print(f"| node peak RSS during the job | {rss.peak / 2**20:.0f} MB |")
        print(f"| {duration_of(short_path):.0f} s upload alone | {alone:.2f} s |")
        print(f"| same upload while the long job runs | {beside:.2f} s ({beside / alone:.1f}x alone, WER {wer(short_text, text):.1f}%) |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
