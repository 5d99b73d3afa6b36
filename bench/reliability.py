"""Reliability benchmark: what a cluster loses when a part of it dies mid-job.

    .venv/bin/python bench/reliability.py                 # 20 trials of each scenario (~25 min)
    .venv/bin/python bench/reliability.py --trials 3      # a quick look

Real node processes (`python -m sayit_node serve`) and a real redis-server (AOF on, password),
killed with real signals. The engine is the simulated one (it sleeps 0.2 s per audio second),
because what is measured is scheduling: leases, the reaper, reconnects; a real model would only
make each trial slower. Every job is ~61 s of espeak-ng speech in 3 chunks.

Scenarios (one job per trial, the victim is killed while it runs one of the job's chunks, after a
random 0-2 s more):
  worker   two nodes; the one that did NOT take the upload is SIGKILLed, then restarted
  origin   two nodes; the one that took the upload is SIGKILLed (the client then asks the
           other one), then restarted
  redis    one node; redis-server is SIGKILLed and restarted 1 s later (AOF, appendfsync
           everysec: the job was acknowledged > 1 s before)

Reported per scenario: jobs lost (not completed, or completed with a chunk missing; goal 0)
and the extra delay of each job over the median of undisturbed runs of the same job (median
and worst).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import NodeProcess  # noqa: E402
from tests.redis_fixture import start_redis  # noqa: E402
from tests.speech import PARAGRAPHS, speak_paragraphs  # noqa: E402

COST = "0.2"  # simulated seconds per audio second
JOB_TIMEOUT = 180.0


def node_env(redis_url: str, name: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SAYIT_ENGINE": "simulated", "SAYIT_SIMULATED_COST": COST,
            "MAX_CONCURRENT_CHUNKS": "1", "WORKER_ID": name}


def submit(url: str, path: Path) -> str:
    with path.open("rb") as fh:
        r = httpx.post(url + "/api/transcribe", files={"audio": fh}, data={"async": "true"}, timeout=60)
    r.raise_for_status()
    return r.json()["jobId"]


def active(url: str) -> int:
    try:
        me = httpx.get(url + "/api/nodes", timeout=2).json()["nodes"][0]
        return int(me["load"]["activeChunks"])
    except (httpx.HTTPError, KeyError, ValueError, IndexError):
        return 0


def wait_job(urls: list[str], job_id: str, timeout: float = JOB_TIMEOUT) -> dict:
    """Poll any node that answers until the job ends (503 while Redis is away is fine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for url in urls:
            try:
                r = httpx.get(f"{url}/api/jobs/{job_id}", timeout=2)
            except httpx.HTTPError:
                continue
            if r.status_code == 200 and r.json()["status"] in ("completed", "failed", "cancelled"):
                return r.json()
            break
        time.sleep(0.1)
    return {"status": "timeout"}


def wait_active(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if active(url):
            return True
        time.sleep(0.05)
    return False


def lost(job: dict) -> bool:
    return job.get("status") != "completed" or job.get("completedChunks") != job.get("totalChunks")


def run_trial(scenario: str, nodes: list[NodeProcess], redis, audio: Path, disturb: bool) -> tuple[dict, float]:
    origin, other = nodes[0], nodes[-1]
    started = time.monotonic()
    job_id = submit(origin.url, audio)
    ask = [n.url for n in nodes]
    victim = None
    if disturb:
        if scenario == "worker":
            victim = other
        elif scenario == "origin":
            victim = origin
            ask = [other.url]
        target = victim or origin
        if not wait_active(target.url):
            raise RuntimeError(f"{scenario}: the victim never ran a chunk")
        time.sleep(random.uniform(0, 2))
        if scenario == "redis":
            redis.stop(hard=True)
            time.sleep(1.0)
            redis.start()
        else:
            victim.kill(signal.SIGKILL)
    job = wait_job(ask, job_id)
    took = time.monotonic() - started
    if victim is not None:
        victim.start()  # for the next trial
    return job, took


def scenario_run(name: str, trials: int, baseline_runs: int, work: Path, audio: Path) -> dict:
    redis = start_redis(work / f"redis-{name}", appendonly=True, password="bench-password")
    count = 1 if name == "redis" else 2
    nodes = [NodeProcess(work / f"{name}-node{i}", node_env(redis.url, f"{name}{i}")) for i in range(count)]
    try:
        for node in nodes:
            node.start()
        base = []
        for _ in range(baseline_runs):
            job, took = run_trial(name, nodes, redis, audio, disturb=False)
            assert not lost(job), job
            base.append(took)
        baseline = statistics.median(base)
        extra, lost_jobs, failures = [], 0, []
        for trial in range(trials):
            job, took = run_trial(name, nodes, redis, audio, disturb=True)
            if lost(job):
                lost_jobs += 1
                failures.append(job.get("error") or job.get("status"))
            extra.append(took - baseline)
            print(f"  {name} trial {trial + 1}/{trials}: {job.get('status')}, {took:.1f} s "
                  f"(+{took - baseline:.1f} s)", flush=True)
        logs = "".join(n.log.read_text(errors="replace") for n in nodes)
        return {"scenario": name, "trials": trials, "lost": lost_jobs, "failures": failures,
                "baseline_s": round(baseline, 1), "extra_median_s": round(statistics.median(extra), 1),
                "extra_worst_s": round(max(extra), 1), "tracebacks_in_logs": logs.count("Traceback")}
    finally:
        for node in nodes:
            node.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--baseline", type=int, default=3, help="undisturbed runs per scenario")
    parser.add_argument("--scenarios", default="worker,origin,redis")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    random.seed(8)
    with tempfile.TemporaryDirectory(prefix="sayit-reliability-") as tmp:
        work = Path(tmp)
        audio = speak_paragraphs(PARAGRAPHS[:4], work / "minute.wav")
        results = []
        for name in args.scenarios.split(","):
            print(f"scenario {name}: {args.trials} trials", flush=True)
            results.append(scenario_run(name, args.trials, args.baseline, work, audio))
    print()
    print("| scenario | trials | jobs lost | undisturbed job | extra delay median | extra delay worst |")
    print("|---|---|---|---|---|---|")
    labels = {"worker": "worker SIGKILL mid-job", "origin": "origin node SIGKILL mid-job",
              "redis": "redis-server SIGKILL + restart mid-job"}
    for r in results:
        print(f"| {labels.get(r['scenario'], r['scenario'])} | {r['trials']} | {r['lost']} | {r['baseline_s']} s | "
              f"{r['extra_median_s']} s | {r['extra_worst_s']} s |")
    for r in results:
        if r["failures"] or r["tracebacks_in_logs"]:
            print(f"{r['scenario']}: failures {r['failures']}, tracebacks in node logs: {r['tracebacks_in_logs']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
