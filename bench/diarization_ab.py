"""Interleaved A/B of two source trees' diarization cost: the 3- and 2-voice conversations of
bench/diarization.py on a node from each tree, with and without diarization, the order rotating
each round, so load from other work on the machine falls on both alike.

    flock /tmp/sayit-bench.lock .venv/bin/python bench/diarization_ab.py ROUNDS BEFORE_TREE [AFTER_TREE]

A tree is a checkout of SayIt (e.g. `git archive <commit> | tar -x -C /tmp/before`).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.conftest import NodeProcess  # noqa: E402
from tests.conversation import VOICES, make_conversation  # noqa: E402


def request(node, path, diarize):
    data = {"model": "whisper-1", "language": "en", "response_format": "diarized_json" if diarize else "verbose_json"}
    with open(path, "rb") as fh:
        t = time.perf_counter()
        r = httpx.post(node.url + "/v1/audio/transcriptions", timeout=3600, files={"file": (path.name, fh)}, data=data)
        w = time.perf_counter() - t
    r.raise_for_status(); return w
load0 = os.getloadavg()
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    files = {}
    for n in (3, 2):
        files[n] = tmp / f"c{n}.wav"; make_conversation(files[n], n, 240, seed=1 + n, voices=VOICES)
    env = {"SAYIT_MODEL": "tiny.en", "MAX_CONCURRENT_CHUNKS": "2", "SAYIT_MAX_DURATION_MINUTES": "120"}
    nodes = {}
    for name, root in (("before", sys.argv[2]), ("after", sys.argv[3] if len(sys.argv) > 3 else str(ROOT))):
        nodes[name] = NodeProcess(tmp / name, {**env, "PYTHONPATH": root}).start(timeout=600)
    try:
        for node in nodes.values():
            request(node, files[3], True)
        walls = {(n, k, d): [] for n in files for k in nodes for d in (False, True)}
        rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
        for r in range(rounds):
            for n in files:
                order = [(k, d) for k in nodes for d in (False, True)]
                order = order[r % 4:] + order[:r % 4]
                for k, d in order:
                    walls[(n, k, d)].append(request(nodes[k], files[n], d))
        for n in files:
            for k in nodes:
                off = statistics.median(walls[(n, k, False)]); on = statistics.median(walls[(n, k, True)])
                print(f"{n} voices {k:>6}: without {off:.2f} s with {on:.2f} s added {on-off:+.2f} s ({(on-off)/off:+.1%}) "
                      f"walls without {[round(x,2) for x in walls[(n,k,False)]]} with {[round(x,2) for x in walls[(n,k,True)]]}", flush=True)
    finally:
        for node in nodes.values():
            node.stop()
print("load average before", [round(x, 2) for x in load0], "after", [round(x, 2) for x in os.getloadavg()])
