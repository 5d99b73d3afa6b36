"""Where SayIt's transcript loses words to whole-file faster-whisper: word errors per chunk.

    .venv/bin/python bench/chunk_errors.py --model base --file all-in-one
    .venv/bin/python bench/chunk_errors.py --model tiny.en --seed 2 --show 3

The node's chunk plan cuts the recording; SayIt's engine (as `load_engine` builds it at the
defaults) transcribes the chunks, and `WhisperModel.transcribe` the whole file. Both are aligned
word by word with the reference (jiwer), and each error is counted in the chunk its hypothesis
words came from (whole-file's segments by their middle). A chunk where SayIt has LOSES or more
errors than whole-file is marked, and its segments (start, end, temperature, text) are printed
beside whole-file's: the way to tell a model's mishearing from a pipeline fault (a lost or
repeated stretch, a hallucinated remainder). `--seed` takes a reshuffled file of bench/reshuffle.py.
One run, no timing; nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import CACHE, RATE, build, normalise, recording  # noqa: E402
from in_process import load_models, segments_on_engine  # noqa: E402
from reshuffle import SEEDS, joined  # noqa: E402

LOSES = 4  # errors more than whole-file's in one chunk that mark it


def errors_by_chunk(reference: str, words: list[tuple[int, str]]) -> Counter:
    """Word errors per chunk: `words` is the hypothesis as (chunk, word) in order."""
    import jiwer

    counts: Counter = Counter()
    if not words:
        return counts
    out = jiwer.process_words(normalise(reference), " ".join(w for _, w in words))
    for a in out.alignments[0]:
        if a.type == "equal":
            continue
        wrong = a.hyp_end_idx - a.hyp_start_idx if a.type == "insert" else a.ref_end_idx - a.ref_start_idx
        counts[words[min(a.hyp_start_idx, len(words) - 1)][0]] += wrong
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--file", default="all-in-one", help="a corpus file name")
    parser.add_argument("--seed", type=int, choices=sorted(SEEDS), help="a reshuffled file instead")
    parser.add_argument("--show", type=int, action="append", default=[], help="also print this chunk")
    parser.add_argument("--cache", type=Path, default=CACHE / "models")
    args = parser.parse_args()

    from sayit_node import audio

    files = build()
    if args.seed is not None:
        samples, reference = joined(files, args.seed)
    else:
        samples, reference = recording(files, args.file)
    engine, whisper, _batched = load_models(args.model, args.cache)
    plan = audio.plan_chunks(samples, parts=engine.parallel_chunks)
    bounds = [(c.start / RATE, c.end / RATE) for c in plan]
    sayit = segments_on_engine(engine, [samples[c.start:c.end] for c in plan])
    whole = list(whisper.transcribe(samples, beam_size=5, language="en")[0])
    engine.close()

    def chunk_at(t: float) -> int:
        return next((i for i, (_, end) in enumerate(bounds) if t < end), len(bounds) - 1)

    whole_in = [chunk_at((s.start + s.end) / 2) for s in whole]
    ours = errors_by_chunk(reference, [(i, w) for i, r in enumerate(sayit) for s in r for w in normalise(s.text).split()])
    theirs = errors_by_chunk(reference, [(i, w) for i, s in zip(whole_in, whole) for w in normalise(s.text).split()])

    print(f"{args.model}, {args.file if args.seed is None else f'seed {args.seed}'}: {len(plan)} chunks")
    print("| chunk | s | sayit errors | whole-file errors |")
    print("|---|---|---|---|")
    marked = {i for i in args.show if 0 <= i < len(plan)}
    for i, (start, end) in enumerate(bounds):
        mark = ours[i] - theirs[i] >= LOSES
        if mark:
            marked.add(i)
        print(f"| {i}{' <<' if mark else ''} | {start:.1f}-{end:.1f} | {ours[i]} | {theirs[i]} |")
    print(f"| total | | {sum(ours.values())} | {sum(theirs.values())} |")
    for i in sorted(marked):
        start, _ = bounds[i]
        print(f"\nchunk {i}, sayit:")
        for s in sayit[i]:
            print(f"  {start + s.start:7.1f}-{start + s.end:7.1f}  t={s.temperature:.1f}  {s.text.strip()}")
        print("whole-file:")
        for s, c in zip(whole, whole_in):
            if c == i:
                print(f"  {s.start:7.1f}-{s.end:7.1f}  t={s.temperature:.1f}  {s.text.strip()}")


if __name__ == "__main__":
    main()
