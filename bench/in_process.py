"""SayIt's engine without HTTP vs faster-whisper's batched pipeline, in one process.

    .venv/bin/python bench/in_process.py --model tiny.en --reps 3
    .venv/bin/python bench/in_process.py --model base --only all-in-one --rounds

`bench/speed.py` measures the product (a node over HTTP); this measures how far the engine
itself can go on this machine, so a gap there can be told apart from the node's own costs.
Rows, on every file of bench/corpus.py, reps interleaved, each cell the median:
- sayit:   the node's engine as `load_engine` builds it from the defaults (two 1-thread model
           workers on two cores, batches of up to 8 chunks, timestamp tokens), on the node's
           chunk plan (decode, VAD and plan counted, as the node does them);
- packed:  the same engine on the batched pipeline's own windows (Silero speech only, joined
           up to 30 s with the silence between left out): what a node would gain by packing
           speech that way (its timestamps would then need mapping back; not built);
- batched: `BatchedInferencePipeline`, batch 8, all cores, its defaults (no timestamp tokens).
`--rounds` prints each batched call of the engine: worker, pieces, longest piece, start/end.
Results go to bench/results/in-process-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import CACHE, build, text_of, word_errors  # noqa: E402
from speed import cpu_description  # noqa: E402

KINDS = ("sayit", "packed", "batched")


def log_rounds(started: list[float], rounds: list[tuple]) -> None:
    """Record every batched engine call (fw_batch.generate_round) in `rounds`."""
    from sayit_node.engines import fw_batch

    original = fw_batch.generate_round

    def timed(model, pieces, **kwargs):
        begin = time.perf_counter()
        try:
            return original(model, pieces, **kwargs)
        finally:
            rounds.append((threading.current_thread().name, len(pieces), max(len(p) for p in pieces) / 16000,
                           begin - started[0], time.perf_counter() - started[0]))

    fw_batch.generate_round = timed


def load_models(model: str, cache: Path):
    """(engine, whisper, batched): the node's engine as `load_engine` builds it at the defaults,
    and faster-whisper's own model (all cores) with its `BatchedInferencePipeline`."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from sayit_node.config import load_settings
    from sayit_node.engines import load_engine
    from sayit_node.engines.models import resolve_model

    engine = load_engine(load_settings(model=model, engine="faster-whisper", whisper_cache_dir=cache))
    whisper = WhisperModel(str(resolve_model(model, cache)), device="cpu", compute_type="int8",
                           cpu_threads=os.cpu_count() or 1)
    return engine, whisper, BatchedInferencePipeline(whisper)


def segments_on_engine(engine, pieces, prompts=None) -> list[list]:
    """All pieces at once, as a node's claims arrive (the engine splits them over its workers):
    each piece's segments. `prompts`: one per piece (None: no prompt)."""
    from sayit_node.engines.base import TranscribeOptions

    prompts = prompts or [None] * len(pieces)
    results: list = [None] * len(pieces)

    def one(i: int) -> None:
        results[i] = engine.transcribe(pieces[i], TranscribeOptions(language="en", prompt=prompts[i]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(pieces))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def on_engine(engine, pieces) -> str:
    """All pieces at once on the engine: the text."""
    return text_of(s for r in segments_on_engine(engine, pieces) for s in r)


def on_chunk_plan(engine, samples) -> str:
    """The node's way: its chunk plan (VAD, cuts in silence), every chunk on the engine at once."""
    from sayit_node import audio

    plan = audio.plan_chunks(samples, parts=engine.parallel_chunks)
    return on_engine(engine, [samples[c.start:c.end] for c in plan])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", action="append", help="corpus file names to run (default: all)")
    parser.add_argument("--rounds", action="store_true", help="print each batched call of the engine")
    parser.add_argument("--cache", type=Path, default=CACHE / "models")
    args = parser.parse_args()

    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    from sayit_node import audio

    engine, _whisper, batched = load_models(args.model, args.cache)
    started, rounds = [0.0], []
    log_rounds(started, rounds)

    def run(kind: str, path: str) -> str:
        samples = audio.decode(path)
        if kind == "sayit":
            return on_chunk_plan(engine, samples)
        if kind == "packed":
            speech = get_speech_timestamps(samples, VadOptions(max_speech_duration_s=30, min_silence_duration_ms=160))
            return on_engine(engine, collect_chunks(samples, speech, max_duration=30)[0])
        segments, _ = batched.transcribe(samples, batch_size=8, language="en")
        return text_of(segments)

    files = [f for f in build() if not args.only or f["name"] in args.only]
    print(f"{args.model}, int8, beam 5, {os.cpu_count()} cores ({cpu_description()}); "
          f"median of {args.reps} interleaved reps", flush=True)
    warm = files[0]["path"]
    for kind in KINDS:
        run(kind, warm)
    walls: dict[tuple[str, str], list[float]] = {}
    errors: dict[tuple[str, str], tuple[int, int]] = {}
    for rep in range(args.reps):
        for f in files:
            for kind in KINDS:
                rounds.clear()
                started[0] = time.perf_counter()
                text = run(kind, f["path"])
                wall = time.perf_counter() - started[0]
                walls.setdefault((f["name"], kind), []).append(wall)
                errors[(f["name"], kind)] = word_errors(f["reference"], text)
                print(f"  rep {rep + 1} {f['name']:26s} {kind:8s} {wall:6.2f} s", flush=True)
                if args.rounds:
                    for name, count, longest, begin, end in sorted(rounds, key=lambda r: r[3]):
                        print(f"      {name}: {count} pieces, longest {longest:4.1f} s, {begin:5.2f} -> {end:5.2f} s")

    rows = []
    for f in files + [{"name": "TOTAL", "seconds": sum(f["seconds"] for f in files)}]:
        names = [x["name"] for x in files] if f["name"] == "TOTAL" else [f["name"]]
        row = {"file": f["name"], "seconds": f["seconds"]}
        for kind in KINDS:
            wall = sum(statistics.median(walls[(n, kind)]) for n in names)
            wrong = sum(errors[(n, kind)][0] for n in names)
            words = sum(errors[(n, kind)][1] for n in names)
            row[kind] = {"wall": wall, "errors": wrong, "wer": 100.0 * wrong / words}
        rows.append(row)

    print(f"\n| file | audio s | sayit vs batched | packed vs batched | batched s | WER sayit / packed / batched % |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        w = {k: r[k]["wall"] for k in KINDS}
        print(f"| {r['file']} | {r['seconds']:.1f} | {w['batched'] / w['sayit']:.2f}x | {w['batched'] / w['packed']:.2f}x"
              f" | {w['batched']:.2f} | {r['sayit']['wer']:.1f} / {r['packed']['wer']:.1f} / {r['batched']['wer']:.1f} |")
    out = ROOT / "bench" / "results" / f"in-process-{args.model}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "reps": args.reps, "cpu": cpu_description(), "rows": rows,
                               "walls": {f"{n} {k}": v for (n, k), v in walls.items()},
                               "command": " ".join(sys.argv)}, indent=1))
    print(f"\n(results in {out.relative_to(ROOT)})")
    engine.close()


if __name__ == "__main__":
    main()
