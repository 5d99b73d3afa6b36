"""First ETA vs real time on a few files of different lengths, on one warm tiny.en node.

    flock /tmp/sayit-bench.lock .venv/bin/python bench/eta.py [--model tiny.en] [--passes 2]

Pass 1 runs on a fresh node (estimates from the warm-up only), later passes after whole jobs
were kept as calibration. "real" is upload start to completion seen (0.2 s polls), as in
bench/speed.py; "after 202" is from the 202 (what the estimate is of: decode and VAD are done).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import CACHE, build  # noqa: E402
from speed import Node  # noqa: E402

FILES = ("jfk-real", "caribbean-150", "us-165-normal", "all-in-one")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=CACHE / "models")
    args = parser.parse_args()
    files = {f["name"]: f for f in build() if f["name"] in FILES}
    node = Node(args.model, args.beam, args.cache, {})
    rows = []
    try:
        for p in range(args.passes):
            for name in FILES:
                e = node.eta_check(files[name]["path"])
                rows.append({"pass": p + 1, "file": name, "seconds": files[name]["seconds"], **e})
                print(f"pass {p + 1} {name:16s} {files[name]['seconds']:6.1f} s audio: first {e['first']:5.1f} s, "
                      f"real {e['wall']:5.1f} s ({e['first'] / e['wall']:.2f}x), after 202 {e['after']:5.1f} s "
                      f"({e['first'] / e['after']:.2f}x); series {[round(v, 1) for _, v in e['etas']]}", flush=True)
        warm = [line for line in node.node.log.read_text().splitlines() if "warm-up" in line]
        print(warm[-1] if warm else "(no warm-up line in the node log)")
    finally:
        node.close()
    out = ROOT / "bench" / "results" / f"eta-{args.model}.json"
    out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
