"""Load: N concurrent 5-minute uploads against ONE node. All must complete with no 5xx.

    .venv/bin/python bench/load.py                    # 20 x 5 min, real tiny.en (int8), ~10 min
    .venv/bin/python bench/load.py --simulated        # the simulated engine: checks the plumbing only

Real `python -m sayit_node serve` process on 127.0.0.1 with the node's default limits
(queued audio per node and per client, concurrent uploads; `--node-env KEY=VALUE` overrides
one), espeak-ng speech trimmed to exactly 5 minutes with sox, every upload sent at once from its
own thread (async=true), then polled to the end. Each upload behaves as a real client: a 429 is
retried after the `Retry-After` it names (every 429 is counted). Meanwhile `/api/health` is timed
every 0.5 s and the RSS of the node and its child processes is sampled every 20 ms.

Reported: uploads accepted, 429s, other 4xx, 5xx (any request; a connection error counts as 5xx),
jobs completed, wall time from the first upload to the last job done, audio-s per wall-s, peak RSS,
/api/health latency (median, 95th percentile, worst), tracebacks in the node's log, and the
machine's load average before and after. Every loop is bounded by `--timeout`.
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
from collections import Counter as Tally
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import NodeProcess, PeakRss  # noqa: E402
from tests.speech import PARAGRAPHS, duration_of, long_speech, speak_paragraphs  # noqa: E402


class Statuses:
    """Every HTTP status the bench saw, from all threads (599: no answer at all)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: Tally[int] = Tally()
        self.by_route: Tally[tuple[str, int]] = Tally()

    def add(self, route: str, status: int) -> None:
        with self.lock:
            self.seen[status] += 1
            self.by_route[(route, status)] += 1

    def count(self, test) -> int:
        return sum(n for s, n in self.seen.items() if test(s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--simulated", action="store_true", help="simulated engine (plumbing only)")
    parser.add_argument("--node-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra node setting (default: the node's own limits)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    args = parser.parse_args()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="sayit-load-"))
    base = speak_paragraphs(PARAGRAPHS, work / "base.wav")
    longer, _ = long_speech(work / "longer.wav", args.minutes, base=base)
    audio = work / "upload.wav"
    subprocess.run(["sox", str(longer), str(audio), "trim", "0", str(args.minutes * 60)], check=True)
    seconds = duration_of(audio)
    env = {"MAX_CONCURRENT_CHUNKS": str(os.cpu_count() or 1)}  # the node's default (tests/conftest sets 2)
    env |= dict(item.split("=", 1) for item in args.node_env)
    if args.simulated:
        env |= {"SAYIT_ENGINE": "simulated", "SAYIT_SIMULATED_COST": "0.01"}
    node = NodeProcess(work / "node", env).start(timeout=120)
    statuses = Statuses()
    health_ms: list[float] = []
    done = threading.Event()
    deadline = time.monotonic() + args.timeout
    retry_waits: list[float] = []

    def probe_health() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    r = client.get(node.url + "/api/health")
                    statuses.add("health", r.status_code)
                except httpx.HTTPError:
                    statuses.add("health", 599)
                health_ms.append((time.monotonic() - started) * 1000)
                done.wait(0.5)

    job_ids: list[str | None] = [None] * args.uploads

    def upload(i: int) -> None:
        with httpx.Client(timeout=600) as client:
            while time.monotonic() < deadline:
                try:
                    with audio.open("rb") as fh:
                        r = client.post(node.url + "/api/transcribe", files={"audio": (f"load{i}.wav", fh)},
                                        data={"async": "true"})
                except httpx.HTTPError as exc:
                    statuses.add("upload", 599)
                    print(f"upload {i}: no answer ({exc!r})", flush=True)
                    return
                statuses.add("upload", r.status_code)
                if r.status_code == 202:
                    job_ids[i] = r.json()["jobId"]
                    return
                if r.status_code == 429 and "retry-after" in r.headers:
                    wait = float(r.headers["retry-after"])
                    with statuses.lock:
                        retry_waits.append(wait)
                    print(f"upload {i}: 429 {r.json().get('error', {}).get('code')}, retry in {wait:g} s", flush=True)
                    time.sleep(wait)
                    continue
                print(f"upload {i}: {r.status_code} {r.text[:200]}", flush=True)
                return

    finished: dict[str, dict] = {}
    texts: list[str] = []
    tracebacks = 0
    try:
        with PeakRss(node.proc.pid, children=True) as rss:
            prober = threading.Thread(target=probe_health, daemon=True)
            prober.start()
            started = time.monotonic()
            threads = [threading.Thread(target=upload, args=(i,)) for i in range(args.uploads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted = time.monotonic() - started
            ids = [j for j in job_ids if j]
            print(f"{len(ids)} of {args.uploads} uploads accepted in {accepted:.1f} s", flush=True)
            with httpx.Client(timeout=60) as client:
                while len(finished) < len(ids) and time.monotonic() < deadline:
                    for job_id in ids:
                        if job_id not in finished:
                            try:
                                r = client.get(f"{node.url}/api/jobs/{job_id}")
                            except httpx.HTTPError:
                                statuses.add("poll", 599)
                                continue
                            statuses.add("poll", r.status_code)
                            if r.status_code == 200 and r.json()["status"] in ("completed", "failed", "cancelled"):
                                finished[job_id] = r.json()
                                print(f"job {job_id}: {r.json()['status']} after {time.monotonic() - started:.0f} s",
                                      flush=True)
                    time.sleep(1.0)
                wall = time.monotonic() - started
                for job_id in finished:
                    r = client.get(f"{node.url}/api/jobs/{job_id}/result", params={"format": "text"})
                    statuses.add("result", r.status_code)
                    texts.append(r.text if r.status_code == 200 else "")
            done.set()
            prober.join()
    finally:
        node.stop()
        if node.log.exists():
            tracebacks = node.log.read_text(errors="replace").count("Traceback")
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    completed = sum(1 for j in finished.values() if j["status"] == "completed")
    engine = "simulated engine" if args.simulated else "faster-whisper tiny.en int8"
    limits = ", ".join(f"{k}={v}" for k, v in env.items())
    q = statistics.quantiles(health_ms, n=20, method="inclusive") if len(health_ms) >= 2 else [0.0] * 19
    print(f"\n{args.uploads} concurrent {seconds / 60:.1f}-minute uploads from one client, one node, {engine}, "
          f"{limits}, other limits the node's defaults, {os.cpu_count()} cores\n")
    print("| metric | value |\n|---|---|")
    print(f"| uploads accepted (202) | {len(ids)} / {args.uploads} |")
    print(f"| 429 answers (retried after Retry-After) | {statuses.count(lambda s: s == 429)}"
          + (f", waits {min(retry_waits):g}-{max(retry_waits):g} s" if retry_waits else "") + " |")
    print(f"| other 4xx answers | {statuses.count(lambda s: 400 <= s < 500 and s != 429)} |")
    print(f"| 5xx answers or no answer (uploads, polls, health, results) | "
          f"{statuses.count(lambda s: s >= 500)} of {sum(statuses.seen.values())} requests |")
    print(f"| jobs completed | {completed} / {args.uploads} |")
    print(f"| wall time, first upload to last job done | {wall:.0f} s "
          f"({args.uploads * seconds / wall:.1f} audio-s / wall-s) |")
    print(f"| node peak RSS | {rss.peak / 2**20:.0f} MB (idle before the load {rss.before / 2**20:.0f} MB; "
          f"child processes seen: {len(rss.children_seen)}, peak with them {rss.peak_tree / 2**20:.0f} MB) |")
    print(f"| /api/health latency during load (n={len(health_ms)}) | median {statistics.median(health_ms):.0f} ms, "
          f"p95 {q[18]:.0f} ms, worst {max(health_ms):.0f} ms |")
    print(f"| shortest transcript | {min(len(t) for t in texts) if texts else 0} characters |")
    print(f"| tracebacks in the node log | {tracebacks} |")
    print(f"| load average (1/5/15 min) before, after | {' / '.join(f'{x:.2f}' for x in load_before)}, "
          f"{' / '.join(f'{x:.2f}' for x in load_after)} |")
    print("\nstatus counts by route:", dict(sorted(statuses.by_route.items())))


if __name__ == "__main__":
    main()
