"""Scheduling benchmark: several node processes against one Redis.

    .venv/bin/python bench/scheduling.py              # simulated nodes 1x:2x:4x, ~10 jobs of 1-30 min
    .venv/bin/python bench/scheduling.py --real       # plus two real tiny.en nodes on a ~6 min file

Simulated engines sleep in proportion to the audio (scaled: 10x, 20x, 40x real time), so many
nodes fit on 2 cores. Reports makespan against the ideal (total audio / sum of node speeds), the
worst short-job latency under load, and chunks per node.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import NodeProcess  # noqa: E402
from tests.redis_fixture import start_redis  # noqa: E402
from tests.speech import PARAGRAPHS, duration_of, long_speech, speak_paragraphs, wer  # noqa: E402

JOB_MINUTES = [30, 20, 15, 10, 8, 5, 3, 2, 1, 1]


def submit(url: str, path: Path) -> str:
    with path.open("rb") as fh:
        r = httpx.post(url + "/api/transcribe", files={"audio": fh}, data={"async": "true"}, timeout=600)
    r.raise_for_status()
    return r.json()["jobId"]


def wait_all(url: str, job_ids: list[str]) -> dict[str, float]:
    done: dict[str, float] = {}
    while len(done) < len(job_ids):
        for job_id in job_ids:
            if job_id not in done:
                job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()
                if job["status"] in ("completed", "failed"):
                    assert job["status"] == "completed", job
                    done[job_id] = time.monotonic()
        time.sleep(0.2)
    return done


def simulated(work: Path, base: Path) -> None:
    speeds = {"slow": 10.0, "mid": 20.0, "fast": 40.0}
    files = {}
    for minutes in sorted(set(JOB_MINUTES)):
        files[minutes] = long_speech(work / f"job{minutes}.wav", minutes, base=base)[0]
    redis = start_redis(work / "redis")
    nodes = []
    try:
        for name, speed in speeds.items():
            nodes.append(NodeProcess(work / name, {"REDIS_URL": redis.url, "WORKER_ID": name,
                                                   "SAYIT_ENGINE": "simulated", "SAYIT_SIMULATED_COST": str(1 / speed),
                                                   "MAX_CONCURRENT_CHUNKS": "1", "SAYIT_MAX_DURATION_MINUTES": "60",
                                                   "SAYIT_DISCOVERY": "off"}).start())
        url = nodes[0].url
        total_audio = sum(duration_of(files[m]) for m in JOB_MINUTES)
        started = time.monotonic()
        long_ids, short_ids, short_submitted = [], [], {}
        for minutes in JOB_MINUTES:
            job_id = submit(nodes[len(long_ids) % 3].url, files[minutes])
            if minutes <= 1:
                short_ids.append(job_id)
                short_submitted[job_id] = time.monotonic()
            else:
                long_ids.append(job_id)
        done = wait_all(url, long_ids + short_ids)
        makespan = max(done.values()) - started
        ideal = total_audio / sum(speeds.values())
        short_latency = max(done[j] - short_submitted[j] for j in short_ids)
        short_alone = duration_of(files[1]) / speeds["fast"]
        chunks = {n.env["WORKER_ID"]: httpx.get(n.url + "/api/queue-status").json()["chunksDoneHere"] for n in nodes}
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
    total_chunks = sum(chunks.values())
    print(f"\nSimulated nodes (10x, 20x, 40x real time), {len(JOB_MINUTES)} jobs, {total_audio / 60:.0f} min of audio\n")
    print("| metric | value |\n|---|---|")
    print(f"| makespan | {makespan:.1f} s |")
    print(f"| ideal (audio / sum of speeds) | {ideal:.1f} s |")
    print(f"| makespan / ideal | {makespan / ideal:.3f} |")
    print(f"| worst 1-min job latency under load | {short_latency:.1f} s (alone on the fastest node: {short_alone:.1f} s) |")
    for name, speed in speeds.items():
        print(f"| chunks on {name} ({speed:.0f}x) | {chunks[name]} ({100 * chunks[name] / total_chunks:.0f}%, "
              f"ideal {100 * speed / sum(speeds.values()):.0f}%) |")


def real(work: Path, base: Path) -> None:
    path, reference = long_speech(work / "real.wav", 5, base=base)
    redis = start_redis(work / "redis-real")
    rows = {}
    try:
        for label, count, per_node in (("one node (2 chunks at once)", 1, 2), ("two nodes (1 chunk each)", 2, 1)):
            redis_env = {"REDIS_URL": redis.url} if count > 1 else {}
            nodes = [NodeProcess(work / f"real-{count}-{i}", {**redis_env, "WORKER_ID": f"n{i}",
                                                              "MAX_CONCURRENT_CHUNKS": str(per_node)}).start()
                     for i in range(count)]
            try:
                started = time.monotonic()
                job_id = submit(nodes[0].url, path)
                wait_all(nodes[0].url, [job_id])
                wall = time.monotonic() - started
                text = httpx.get(f"{nodes[0].url}/api/jobs/{job_id}/result", params={"format": "text"}).text
                rows[label] = (wall, wer(reference, text))
            finally:
                for node in nodes:
                    node.stop()
    finally:
        redis.stop()
    audio = duration_of(path)
    print(f"\nReal tiny.en on {audio:.0f} s of speech (both on this one 2-core machine)\n")
    print("| run | wall s | audio-s / wall-s | WER % |\n|---|---|---|---|")
    for label, (wall, error) in rows.items():
        print(f"| {label} | {wall:.1f} | {audio / wall:.1f} | {error:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--real", action="store_true", help="also run two real-model nodes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sayit-sched-"))
    try:
        base = speak_paragraphs(PARAGRAPHS, work / "base.wav")
        simulated(work, base)
        if args.real:
            real(work, base)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
