"""Load: N concurrent 5-minute uploads against ONE node. All must complete with no 5xx.

    .venv/bin/python bench/load.py                    # 20 x 5 min, real tiny.en (int8), ~5-10 min
    .venv/bin/python bench/load.py --simulated        # the simulated engine: checks the plumbing only

Real `python -m sayit_node serve` process, espeak-ng speech (trimmed to exactly 5 minutes with
sox), every upload sent at once from its own thread (async=true), then polled to the end.
Meanwhile `/api/health` is timed every 0.5 s and the node's RSS is sampled every 20 ms.
Reported: uploads accepted, jobs completed, 5xx answers seen (any request), wall time from the
first upload to the last job done, audio-s per wall-s, node peak RSS, health latency median and
worst. MAX_CONCURRENT_CHUNKS = cores (the default); the per-client queue bound is raised to fit
20 x 5 min from one client (the default, 120 min, is exactly what this load exceeds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import NodeProcess, PeakRss  # noqa: E402
from tests.speech import PARAGRAPHS, duration_of, long_speech, speak_paragraphs  # noqa: E402


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: list[int] = []

    def add(self, status: int) -> None:
        with self.lock:
            self.statuses.append(status)

    @property
    def server_errors(self) -> int:
        return sum(1 for s in self.statuses if s >= 500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--simulated", action="store_true", help="simulated engine (plumbing only)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sayit-load-"))
    base = speak_paragraphs(PARAGRAPHS, work / "base.wav")
    longer, _ = long_speech(work / "longer.wav", args.minutes, base=base)
    audio = work / "upload.wav"
    subprocess.run(["sox", str(longer), str(audio), "trim", "0", str(args.minutes * 60)], check=True)
    seconds = duration_of(audio)
    env = {"MAX_CONCURRENT_CHUNKS": str(os.cpu_count() or 1),
           "SAYIT_MAX_QUEUED_MINUTES": str(args.uploads * args.minutes + 60),
           "SAYIT_MAX_QUEUED_MINUTES_PER_CLIENT": str(args.uploads * args.minutes + 60),
           "SAYIT_MIN_FREE_DISK_MB": "0"}
    if args.simulated:
        env |= {"SAYIT_ENGINE": "simulated", "SAYIT_SIMULATED_COST": "0.01"}
    node = NodeProcess(work / "node", env).start(timeout=120)
    counter = Counter()
    health_ms: list[float] = []
    done = threading.Event()

    def probe_health() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                started = time.monotonic()
                try:
                    r = client.get(node.url + "/api/health")
                    counter.add(r.status_code)
                    health_ms.append((time.monotonic() - started) * 1000)
                except httpx.HTTPError:
                    health_ms.append((time.monotonic() - started) * 1000)
                    counter.add(599)
                done.wait(0.5)

    job_ids: list[str | None] = [None] * args.uploads

    def upload(i: int) -> None:
        with httpx.Client(timeout=600) as client, audio.open("rb") as fh:
            r = client.post(node.url + "/api/transcribe", files={"audio": (f"load{i}.wav", fh)},
                            data={"async": "true"})
            counter.add(r.status_code)
            if r.status_code == 202:
                job_ids[i] = r.json()["jobId"]
            else:
                print(f"upload {i}: {r.status_code} {r.text[:200]}", flush=True)

    try:
        with PeakRss(node.proc.pid) as rss:
            prober = threading.Thread(target=probe_health, daemon=True)
            prober.start()
            started = time.monotonic()
            threads = [threading.Thread(target=upload, args=(i,)) for i in range(args.uploads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted = time.monotonic() - started
            print(f"{sum(1 for j in job_ids if j)} of {args.uploads} uploads accepted in {accepted:.1f} s", flush=True)
            finished: dict[str, dict] = {}
            with httpx.Client(timeout=60) as client:
                while len(finished) < sum(1 for j in job_ids if j):
                    for job_id in job_ids:
                        if job_id and job_id not in finished:
                            r = client.get(f"{node.url}/api/jobs/{job_id}")
                            counter.add(r.status_code)
                            if r.status_code == 200 and r.json()["status"] in ("completed", "failed", "cancelled"):
                                finished[job_id] = r.json()
                    time.sleep(1.0)
                texts = [client.get(f"{node.url}/api/jobs/{j}/result", params={"format": "text"}).text
                         for j in finished]
            wall = time.monotonic() - started
            done.set()
            prober.join()
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
    completed = sum(1 for j in finished.values() if j["status"] == "completed")
    engine = "simulated engine" if args.simulated else "faster-whisper tiny.en int8"
    print(f"\n{args.uploads} concurrent {seconds / 60:.1f}-minute uploads, one node, {engine}, "
          f"MAX_CONCURRENT_CHUNKS={env['MAX_CONCURRENT_CHUNKS']}, {os.cpu_count()} cores\n")
    print("| metric | value |\n|---|---|")
    print(f"| uploads accepted (202) | {sum(1 for j in job_ids if j)} / {args.uploads} |")
    print(f"| jobs completed | {completed} / {args.uploads} |")
    print(f"| 5xx answers (uploads, polls, health) | {counter.server_errors} of {len(counter.statuses)} requests |")
    print(f"| wall time, first upload to last job done | {wall:.0f} s ({args.uploads * seconds / wall:.1f} audio-s / wall-s) |")
    print(f"| node peak RSS | {rss.peak / 2**20:.0f} MB |")
    print(f"| /api/health latency during load (n={len(health_ms)}) | median {statistics.median(health_ms):.0f} ms, "
          f"worst {max(health_ms):.0f} ms |")
    print(f"| shortest transcript | {min(len(t) for t in texts) if texts else 0} characters |")


if __name__ == "__main__":
    main()
