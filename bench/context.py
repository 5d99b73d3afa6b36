"""What previous-text context would bring SayIt's chunks: word errors without and with it.

    .venv/bin/python bench/context.py --model base
    .venv/bin/python bench/context.py --model tiny.en --seed 1 --file all-in-one

Whole-file faster-whisper decodes each 30 s window with the text before it as its prompt
(`condition_on_previous_text`, the last 223 tokens); SayIt's chunks are decoded at once, each
without it. This measures what that context is worth, in one process: the node's engine (as
`load_engine` builds it at the defaults) transcribes the node's chunk plan of each input once
without context (as the node does), then again with each chunk prompted by that first pass's
text of
- before:   every chunk before it (the upper bound: the engine keeps the last 223 tokens);
- previous: the one chunk before it;
- waves:    the one chunk before it, for odd chunks only (even chunks keep their first-pass
            text): what a node could give by running a job's chunks in two waves.
Prompted chunks run one by one (the engine batches only chunks with the same prompt), so no
timing. Inputs: reshuffled files of bench/reshuffle.py (--seed) and corpus files (--file);
default seeds 1 and 2 and the 6-minute file. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import CACHE, build, recording, text_of, word_errors  # noqa: E402
from in_process import load_models, segments_on_engine  # noqa: E402
from reshuffle import SEEDS, joined  # noqa: E402

MODES = ("before", "previous", "waves")


def prompts_for(texts: list[str], mode: str) -> list[str | None]:
    """Each chunk's prompt in `mode`, from the first pass's chunk texts."""
    if mode == "before":
        return [" ".join(texts[:k]) or None for k in range(len(texts))]
    return [texts[k - 1] if k and (mode == "previous" or k % 2) else None for k in range(len(texts))]


def transcribe(engine, pieces, prompts) -> list[str]:
    """Each piece's text, all pieces at once on the engine, each with its prompt."""
    return [text_of(r) for r in segments_on_engine(engine, pieces, prompts)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--seed", type=int, action="append", choices=sorted(SEEDS), help="a reshuffled file")
    parser.add_argument("--file", action="append", help="a corpus file name")
    parser.add_argument("--cache", type=Path, default=CACHE / "models")
    args = parser.parse_args()

    from sayit_node import audio

    files = build()
    seeds, names = args.seed or [], args.file or []
    if not seeds and not names:
        seeds, names = [1, 2], ["all-in-one"]
    inputs = [(f"seed {s}", *joined(files, s)) for s in seeds]
    inputs += [(name, *recording(files, name)) for name in names]

    engine, _whisper, _batched = load_models(args.model, args.cache)
    print(f"{args.model}: word errors without context / with the first pass's text as context")
    print("| input | words | none | " + " | ".join(MODES) + " |")
    print("|---|---|---|" + "---|" * len(MODES))
    totals = dict.fromkeys(("none", *MODES), 0)
    for name, samples, reference in inputs:
        pieces = [samples[c.start:c.end] for c in audio.plan_chunks(samples, parts=engine.parallel_chunks)]
        first = transcribe(engine, pieces, [None] * len(pieces))
        errors, words = word_errors(reference, " ".join(first))
        row = {"none": errors}
        for mode in MODES:
            prompts = prompts_for(first, mode)
            prompted = [i for i, p in enumerate(prompts) if p]  # the others keep their first-pass text
            texts = list(first)
            for i, text in zip(prompted, transcribe(engine, [pieces[i] for i in prompted], [prompts[i] for i in prompted])):
                texts[i] = text
            row[mode] = word_errors(reference, " ".join(texts))[0]
        for k in totals:
            totals[k] += row[k]
        print(f"| {name} | {words} | " + " | ".join(str(row[k]) for k in totals) + " |", flush=True)
    print("| TOTAL | | " + " | ".join(str(totals[k]) for k in totals) + " |")
    engine.close()


if __name__ == "__main__":
    main()
