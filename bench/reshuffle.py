"""Long recordings the project was not tuned on: the corpus files joined in other orders.

    .venv/bin/python bench/reshuffle.py --model tiny.en
    .venv/bin/python bench/reshuffle.py --model base

The corpus's 6-minute file joins its parts in one order, 1 s apart; a chunk plan or a guard
tuned on it may fail on another. This joins the same files (all-in-one left out) shuffled with
`random.Random(seed)`, each seed with its own gap between files (SEEDS), and transcribes each
joined file in one process:
- sayit:   the node's engine as `load_engine` builds it at the defaults, on the node's chunk plan;
- batched: `BatchedInferencePipeline` (batch 8, its defaults);
- whole:   `WhisperModel.transcribe` on the whole file, all cores.
Per file and kind it reports word errors and the longest run of reference words missing from
the transcript: speech lost without a trace (a window that ended early) shows there first.
One run, no timing: each output is deterministic on one machine (speed is bench/speed.py's and
bench/in_process.py's). Results go to bench/results/reshuffle-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import CACHE, RATE, build, normalise, text_of, word_errors  # noqa: E402
from in_process import load_models, on_chunk_plan  # noqa: E402
from speed import cpu_description  # noqa: E402

KINDS = ("sayit", "batched", "whole")
SEEDS = {1: 0.5, 2: 2.0, 3: 1.0, 4: 0.3, 5: 3.0}  # seed -> seconds of silence between files


def joined(files: list[dict], seed: int) -> tuple[np.ndarray, str]:
    """The corpus files but all-in-one, in the order `seed` shuffles them and SEEDS[seed]
    seconds apart, and their reference."""
    from sayit_node import audio

    order = [f for f in files if f["name"] != "all-in-one"]
    random.Random(seed).shuffle(order)
    silence = np.zeros(int(SEEDS[seed] * RATE), np.float32)
    pieces = [p for f in order for p in (audio.decode(f["path"]), silence)]
    return np.concatenate(pieces[:-1]), " ".join(f["reference"] for f in order)


def longest_missing(reference: str, hypothesis: str) -> int:
    """The longest run of reference words the hypothesis leaves out (jiwer's alignment)."""
    import jiwer

    ref, hyp = normalise(reference), normalise(hypothesis)
    if not hyp:
        return len(ref.split())
    chunks = jiwer.process_words(ref, hyp).alignments[0]
    return max((c.ref_end_idx - c.ref_start_idx for c in chunks if c.type == "delete"), default=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--seed", type=int, action="append", choices=sorted(SEEDS),
                        help="run only these seeds (default: all)")
    parser.add_argument("--cache", type=Path, default=CACHE / "models")
    args = parser.parse_args()

    engine, whisper, batched = load_models(args.model, args.cache)

    def run(kind: str, samples: np.ndarray) -> str:
        if kind == "sayit":
            return on_chunk_plan(engine, samples)
        if kind == "batched":
            segments, _ = batched.transcribe(samples, batch_size=8, language="en")
        else:
            segments, _ = whisper.transcribe(samples, beam_size=5, language="en")
        return text_of(segments)

    files = build()
    print(f"{args.model}, int8, beam 5, {os.cpu_count()} cores ({cpu_description()})", flush=True)
    rows = []
    for seed in args.seed or sorted(SEEDS):
        samples, reference = joined(files, seed)
        row = {"file": f"seed {seed}, gap {SEEDS[seed]:g} s", "seconds": round(len(samples) / RATE, 1)}
        for kind in KINDS:
            text = run(kind, samples)
            errors, words = word_errors(reference, text)
            row[kind] = {"errors": errors, "words": words, "wer": 100.0 * errors / words,
                         "longest_missing": longest_missing(reference, text), "text": text}
            print(f"  {row['file']:20s} {kind:8s} {errors:4d} word errors, longest missing run "
                  f"{row[kind]['longest_missing']} words", flush=True)
        rows.append(row)

    total = {k: sum(r[k]["errors"] for r in rows) for k in KINDS}
    words = sum(r["sayit"]["words"] for r in rows)
    print("\n| file | audio s | word errors sayit / batched / whole | WER % sayit / batched / whole"
          " | longest missing run, words: sayit / batched / whole |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['file']} | {r['seconds']:.1f} | " + " / ".join(str(r[k]["errors"]) for k in KINDS)
              + " | " + " / ".join(f"{r[k]['wer']:.1f}" for k in KINDS)
              + " | " + " / ".join(str(r[k]["longest_missing"]) for k in KINDS) + " |")
    print(f"| TOTAL | {sum(r['seconds'] for r in rows):.1f} | " + " / ".join(str(total[k]) for k in KINDS)
          + " | " + " / ".join(f"{100.0 * total[k] / words:.1f}" for k in KINDS) + " | |")
    out = ROOT / "bench" / "results" / f"reshuffle-{args.model}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "cpu": cpu_description(), "rows": rows,
                               "command": " ".join(sys.argv)}, indent=1))
    print(f"\n(results in {out.relative_to(ROOT)})")
    engine.close()


if __name__ == "__main__":
    main()
