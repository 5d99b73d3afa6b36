"""Speed and accuracy on the varied corpus: SayIt over HTTP vs faster-whisper by hand, same run.

    .venv/bin/python bench/speed.py --model tiny.en            # beam 5, int8, 3 interleaved reps
    .venv/bin/python bench/speed.py --model base --reps 3
    .venv/bin/python bench/speed.py --variant old:SAYIT_BATCH_SIZE=1,MAX_CONCURRENT_CHUNKS=2   # extra SayIt rows

Rows, on every file of bench/corpus.py (~6 min: several espeak-ng voices, rates and pause
lengths, a noisy file, the real JFK clip):
- sayit:   a real node (`sayit-node serve` on 127.0.0.1), upload over HTTP to the final
           verbose_json (upload, decode, VAD, chunking, transcription, stitching all counted);
- batched: faster-whisper `BatchedInferencePipeline`, batch_size=8, its defaults
           (Silero VAD, no timestamp tokens), given the file path (its decode is counted);
- whole:   `WhisperModel.transcribe` on the whole file path (defaults, no VAD).
All with the same model, int8 on CPU, beam 5, language en. Baselines run in one child
process that keeps its model loaded (cpu_threads = all cores); the node is warm too (one
warm-up job each before timing). The machine is shared (2 cores, other people's tests), so
runs are interleaved (sayit, batched, whole, sayit, batched, whole, ... per file) and each
cell is the MEDIAN of --reps runs; a total row sums the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import CACHE, build, text_of, wer, word_errors  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _model_dir(model: str, cache: Path) -> str:
    from sayit_node.engines.models import resolve_model

    return str(resolve_model(model, cache))


def _count(_: int) -> float:
    started = time.perf_counter()
    x = 0
    for i in range(10_000_000):
        x += i
    return time.perf_counter() - started


def cpu_description() -> str:
    """The CPU's name and its widest vector extension. CTranslate2 picks its kernels by it
    ("Selected ISA" with CT2_VERBOSE=1): on a 2-vCPU EPYC with AVX2 only, SayIt lost much more
    speed against the earlier days' host than the batched pipeline did (README, Performance)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    flags = set(flags.group(1).split()) if flags else set()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name.group(1).strip() if name else platform.machine()}, {isa}"


def parallel_scaling() -> float:
    """How much two cores give over one on this machine: the throughput of two processes
    counting at once over one alone (2.0 on two real cores; KVM vCPUs that share a core
    give less, and then every parallel scheme, SayIt's two workers included, gains less)."""
    from multiprocessing import Pool

    alone = _count(0)
    with Pool(2) as pool:
        together = pool.map(_count, [0, 1])
    return round(2 * alone / max(together), 2)


def serve_baselines(model: str, beam: int, cache: Path) -> None:
    """Child process: keep one model loaded, run baselines on request (JSON lines in/out)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    whisper = WhisperModel(_model_dir(model, cache), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1)
    batched = BatchedInferencePipeline(whisper)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        started = time.perf_counter()
        if req["kind"] == "whole":
            segments, _ = whisper.transcribe(req["path"], beam_size=beam, language="en")
        else:
            segments, _ = batched.transcribe(req["path"], beam_size=beam, batch_size=8, language="en")
        segments = list(segments)
        wall = time.perf_counter() - started
        print(json.dumps({"wall": wall, "text": text_of(segments),
                          "segments": [[s.start, s.end] for s in segments]}), flush=True)


class Baselines:
    def __init__(self, model: str, beam: int, cache: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--_serve", "--model", model, "--beam", str(beam),
                                      "--cache", str(cache)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def run(self, kind: str, path: str) -> dict:
        self.proc.stdin.write(json.dumps({"kind": kind, "path": path}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


class Node:
    def __init__(self, model: str, beam: int, cache: Path, env: dict[str, str]) -> None:
        from tests.conftest import NodeProcess

        self._home = tempfile.TemporaryDirectory(prefix="sayit-speed-")
        node = NodeProcess(Path(self._home.name), {
            "SAYIT_MODEL": model, "SAYIT_ENGINE": "faster-whisper", "SAYIT_BEAM_SIZE": str(beam),
            "SAYIT_MAX_DURATION_MINUTES": "120", "WHISPER_CACHE_DIR": str(cache), **env})
        if "MAX_CONCURRENT_CHUNKS" not in env:  # the node's own default, as users run it
            node.env.pop("MAX_CONCURRENT_CHUNKS", None)
        self.node = node.start(timeout=600)

    def run(self, path: str) -> dict:
        with open(path, "rb") as fh:
            started = time.perf_counter()
            response = httpx.post(self.node.url + "/v1/audio/transcriptions", timeout=3600,
                                  files={"file": (Path(path).name, fh)},
                                  data={"model": "whisper-1", "response_format": "verbose_json", "language": "en"})
            wall = time.perf_counter() - started
        response.raise_for_status()
        body = response.json()
        return {"wall": wall, "text": body["text"], "segments": [[s["start"], s["end"]] for s in body["segments"]]}

    def eta_check(self, path: str) -> dict:
        """Async job: the first estimate (202's estimatedTime) and how the ETA moves, vs the real time."""
        with open(path, "rb") as fh:
            started = time.perf_counter()
            accepted = httpx.post(self.node.url + "/api/transcribe", files={"audio": (Path(path).name, fh)},
                                  data={"async": "true", "language": "en"}, timeout=600).json()
        accepted_at = time.perf_counter()
        etas = []
        while True:
            job = httpx.get(self.node.url + f"/api/jobs/{accepted['jobId']}", timeout=30).json()
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            etas.append((time.perf_counter() - started, job["etaSeconds"]))
            time.sleep(0.2)
        wall = time.perf_counter() - started
        return {"first": accepted["estimatedTime"], "wall": wall, "after": time.perf_counter() - accepted_at,
                "etas": etas}

    def close(self) -> None:
        self.node.stop()
        self._home.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", action="append", help="corpus file names to run (default: all)")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--variant", action="append", default=[],
                        help="extra SayIt node NAME:KEY=VAL,KEY=VAL (env for that node), run in the same rounds")
    parser.add_argument("--cache", type=Path, default=CACHE / "models", help="model cache (base is joined here)")
    parser.add_argument("--rescore", type=Path, help="re-score a results JSON with the current normaliser")
    parser.add_argument("--_serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rescore:
        rescore(args.rescore)
        return
    if args._serve:
        serve_baselines(args.model, args.beam, args.cache)
        return

    files = [f for f in build() if not args.only or f["name"] in args.only]
    total_audio = sum(f["seconds"] for f in files)
    print(f"corpus: {len(files)} files, {total_audio:.1f} s; model {args.model}, int8, beam {args.beam}, "
          f"{os.cpu_count()} cores; median of {args.reps} interleaved reps", flush=True)

    scaling, cpu = parallel_scaling(), cpu_description()
    print(f"two processes at once run {scaling:.2f}x the work of one (2.0 on two real cores); CPU: {cpu}", flush=True)
    runners: dict[str, object] = {"sayit": Node(args.model, args.beam, args.cache, {})}
    for spec in args.variant:
        name, _, env = spec.partition(":")
        runners[name] = Node(args.model, args.beam, args.cache,
                             dict(kv.split("=", 1) for kv in env.split(",") if kv))
    baselines = None
    if not args.no_baselines:
        baselines = Baselines(args.model, args.beam, args.cache)
    kinds = list(runners) + ([] if baselines is None else ["batched", "whole"])

    def run(kind: str, path: str) -> dict:
        return runners[kind].run(path) if kind in runners else baselines.run(kind, path)

    try:
        warm = next((f["path"] for f in files if f["name"] == "jfk-real"), files[0]["path"])
        for kind in kinds:  # warm-up: model loaded, first-call costs paid
            run(kind, warm)
        walls: dict[tuple[str, str], list[float]] = {}
        outputs: dict[tuple[str, str], dict] = {}
        for rep in range(args.reps):
            for f in files:
                for kind in kinds:
                    result = run(kind, f["path"])
                    walls.setdefault((f["name"], kind), []).append(result["wall"])
                    outputs[(f["name"], kind)] = result
                    print(f"  rep {rep + 1} {f['name']:26s} {kind:8s} {result['wall']:6.2f} s "
                          f"({f['seconds'] / result['wall']:5.1f} audio-s/s)", flush=True)
        etas = {}
        for f in files:
            if f["name"] in ("jfk-real", "us-165-normal", "all-in-one"):
                etas[f["name"]] = runners["sayit"].eta_check(f["path"])
    finally:
        for r in runners.values():
            r.close()
        if baselines:
            baselines.close()

    rows = []
    for f in files:
        row = {"file": f["name"], "seconds": f["seconds"], "note": f["note"]}
        for kind in kinds:
            out = outputs[(f["name"], kind)]
            wall = statistics.median(walls[(f["name"], kind)])
            lengths = [e - s for s, e in out["segments"]]
            errors, words = word_errors(f["reference"], out["text"])
            row[kind] = {"wall": wall, "walls": walls[(f["name"], kind)], "speed": f["seconds"] / wall,
                         "wer": wer(f["reference"], out["text"]), "errors": errors, "words": words,
                         "median_segment": statistics.median(lengths) if lengths else 0.0,
                         "segments": len(lengths), "text": out["text"]}
        rows.append(row)
    total = {"file": "TOTAL", "seconds": total_audio}
    for kind in kinds:
        wall = sum(r[kind]["wall"] for r in rows)
        lengths = [e - s for f in files for s, e in outputs[(f["name"], kind)]["segments"]]
        errors = sum(r[kind]["errors"] for r in rows)
        words = sum(r[kind]["words"] for r in rows)
        total[kind] = {"wall": wall, "speed": total_audio / wall, "wer": 100.0 * errors / words,
                       "median_segment": statistics.median(lengths), "segments": len(lengths)}
    rows.append(total)

    print(f"\n### {args.model}, int8, beam {args.beam} — median of {args.reps} interleaved runs "
          f"({os.cpu_count()} shared cores, two-process scaling {scaling:.2f}x)\n")
    print(render(rows, kinds))
    print("\nFirst ETA vs real time (async job on the warm node, after the rounds above):\n")
    print("| file | first estimate s | real s | ratio | estimate at half time s (real remaining) |")
    print("|---|---|---|---|---|")
    for name, e in etas.items():
        half = min(e["etas"], key=lambda x: abs(x[0] - e["wall"] / 2), default=(0, None))
        print(f"| {name} | {e['first']:.1f} | {e['wall']:.1f} | {e['first'] / e['wall']:.2f}x | "
              f"{half[1]} ({e['wall'] - half[0]:.1f}) |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"speed-{args.model}.json"
    out.write_text(json.dumps({"model": args.model, "beam": args.beam, "reps": args.reps, "cores": os.cpu_count(),
                               "parallel_scaling": scaling, "cpu": cpu, "kinds": kinds, "rows": rows, "etas": etas,
                               "load_average": os.getloadavg(), "command": " ".join(sys.argv)}, indent=1))
    print(f"\n(results in {out.relative_to(ROOT)})")


def rescore(path: Path) -> None:
    data = json.loads(path.read_text())
    refs = {f["name"]: f["reference"] for f in build()}
    rows, kinds = data["rows"], data["kinds"]
    for r in rows[:-1]:
        for k in kinds:
            r[k]["wer"] = wer(refs[r["file"]], r[k]["text"])
            r[k]["errors"], r[k]["words"] = word_errors(refs[r["file"]], r[k]["text"])
    for k in kinds:
        rows[-1][k]["wer"] = 100.0 * sum(r[k]["errors"] for r in rows[:-1]) / sum(r[k]["words"] for r in rows[:-1])
    print(f"### {data['model']}, int8, beam {data['beam']} — median of {data['reps']} interleaved runs "
          f"({data['cores']} shared cores)\n\n`{data['command']}`\n")
    print(render(rows, kinds))
    path.write_text(json.dumps(data, indent=1))


def render(rows: list[dict], kinds: list[str]) -> str:
    sayits = [k for k in kinds if k not in ("batched", "whole")]
    head = ["file", "audio s"]
    for k in kinds:
        head += [f"{k} a-s/s"]
    for k in sayits:
        if "batched" in kinds:
            head += [f"{k} vs batched"]
        if "whole" in kinds:
            head += [f"{k} vs whole"]
    head += [f"WER {k} %" for k in kinds]
    head += [f"median seg {k} s" for k in kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        bold = r["file"] == "TOTAL"
        cells = [f"**{r['file']}**" if bold else r["file"], f"{r['seconds']:.1f}"]
        cells += [f"{r[k]['speed']:.1f}" for k in kinds]
        for k in sayits:
            if "batched" in kinds:
                cells.append(f"{r[k]['speed'] / r['batched']['speed']:.2f}x")
            if "whole" in kinds:
                cells.append(f"{r[k]['speed'] / r['whole']['speed']:.2f}x")
        cells += [f"{r[k]['wer']:.1f}" for k in kinds]
        cells += [f"{r[k]['median_segment']:.1f}" for k in kinds]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
