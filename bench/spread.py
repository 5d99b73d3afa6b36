"""How far word errors move under a change no listener would notice: the recording's level.

    .venv/bin/python bench/spread.py --model base
    .venv/bin/python bench/spread.py --model tiny.en --gains=-2,0,2

Every file of bench/corpus.py is transcribed at each gain (dB, default -1, 0 and +1) by
- sayit:   the node's engine in-process on the node's chunk plan (as bench/in_process.py runs it),
- batched: `BatchedInferencePipeline`, batch 8, its defaults,
- whole:   `WhisperModel.transcribe` on the whole file (defaults, no VAD),
and each system's word errors are printed per gain, per file and in total. A WER gap between two
systems that is within what a 1 dB level change moves either of them is not a difference the
corpus can tell apart (README, "How much a WER moves by itself"). Louder is clipped at full scale:
at +1 dB that is up to 0.02% of a corpus file's samples (151 on the long-pause file). No timing.
Results go to bench/results/spread-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import CACHE, build, text_of, word_errors  # noqa: E402
from in_process import load_models, on_chunk_plan  # noqa: E402
from speed import cpu_description  # noqa: E402

KINDS = ("sayit", "batched", "whole")


def at_gain(samples: np.ndarray, db: float) -> np.ndarray:
    """`samples` made `db` louder (or quieter), clipped to full scale."""
    return np.clip(samples * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--gains", default="-1,0,1", help="level changes in dB, comma-separated")
    parser.add_argument("--only", action="append", help="corpus file names to run (default: all)")
    parser.add_argument("--cache", type=Path, default=CACHE / "models")
    args = parser.parse_args()
    try:
        gains = [float(g) for g in args.gains.split(",")]
    except ValueError:
        parser.error(f"--gains: not a list of numbers: {args.gains!r}")

    from sayit_node import audio

    engine, whisper, batched = load_models(args.model, args.cache)
    runners = {
        "sayit": lambda samples: on_chunk_plan(engine, samples),
        "batched": lambda samples: text_of(batched.transcribe(samples, batch_size=8, language="en")[0]),
        "whole": lambda samples: text_of(whisper.transcribe(samples, language="en")[0]),
    }
    files = [f for f in build() if not args.only or f["name"] in args.only]
    print(f"{args.model}, int8, beam 5 ({cpu_description()}): word errors at "
          + ", ".join(f"{g:+g} dB" for g in gains), flush=True)
    errors: dict[str, dict[str, list[int]]] = {}  # file -> kind -> errors per gain
    words: dict[str, int] = {}
    for f in files:
        samples = audio.decode(f["path"])
        for kind, run in runners.items():
            counts = []
            for db in gains:
                wrong, words[f["name"]] = word_errors(f["reference"], run(at_gain(samples, db)))
                counts.append(wrong)
            errors.setdefault(f["name"], {})[kind] = counts
            print(f"  {f['name']:26s} {kind:8s} " + " / ".join(map(str, counts)), flush=True)

    total_words = sum(words.values())
    totals = {k: [sum(errors[n][k][i] for n in errors) for i in range(len(gains))] for k in KINDS}
    print("\n| file | words | " + " | ".join(f"{k} errors" for k in KINDS) + " |")
    print("|---|---|" + "---|" * len(KINDS))
    for name, row in errors.items():
        print(f"| {name} | {words[name]} | " + " | ".join(" / ".join(map(str, row[k])) for k in KINDS) + " |")
    print(f"| TOTAL | {total_words} | " + " | ".join(" / ".join(map(str, totals[k])) for k in KINDS) + " |")
    print("\nWER % per gain (" + ", ".join(f"{g:+g} dB" for g in gains) + "):")
    for kind in KINDS:
        wers = [100.0 * e / total_words for e in totals[kind]]
        print(f"  {kind:8s} " + " / ".join(f"{w:.1f}" for w in wers) + f"   (range {max(wers) - min(wers):.1f})")
    out = ROOT / "bench" / "results" / f"spread-{args.model}.json"
    out.write_text(json.dumps({"model": args.model, "gains_db": gains, "cpu": cpu_description(), "words": words,
                               "errors": errors, "command": " ".join(sys.argv)}, indent=1))
    print(f"\n(results in {out.relative_to(ROOT)})")
    engine.close()


if __name__ == "__main__":
    main()
