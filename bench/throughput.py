"""Throughput benchmark: faster-whisper by hand vs SayIt end to end, on the same speech file.

    .venv/bin/python bench/throughput.py                 # makes a ~6 min espeak-ng file
    .venv/bin/python bench/throughput.py --audio F --reference F.txt --engine mlx

Rows: faster-whisper whole file (beam 5); BatchedInferencePipeline batch 8 with its defaults
(no timestamp tokens); SayIt over HTTP (upload to final verbose_json). Each row runs in its
own process so peak RSS is its own. Reports audio-s per wall-s, ratios, WER, median segment.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import NodeProcess, PeakRss  # noqa: E402
from tests.speech import PARAGRAPHS, duration_of, long_speech, speak_paragraphs, wer  # noqa: E402


def _model_dir(model: str) -> str:
    from sayit_node.config import load_settings
    from sayit_node.engines.models import resolve_model

    return str(resolve_model(model, load_settings().whisper_cache_dir))


def run_baseline(kind: str, audio: str, model: str, beam: int) -> dict:
    """Runs inside a child process: one faster-whisper baseline."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio

    cores = os.cpu_count() or 1
    whisper = WhisperModel(_model_dir(model), device="cpu", compute_type="int8", cpu_threads=cores)
    samples = decode_audio(audio)
    started = time.perf_counter()
    if kind == "whole":
        segments, _ = whisper.transcribe(samples, beam_size=beam, language="en")
    else:
        segments, _ = BatchedInferencePipeline(whisper).transcribe(samples, beam_size=beam, batch_size=8, language="en")
    segments = list(segments)
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "text": " ".join(s.text.strip() for s in segments),
        "segment_lengths": [s.end - s.start for s in segments],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_sayit(audio: str, model: str, engine: str, beam: int) -> dict:
    """Start a real node, upload over HTTP, wait for the transcript; sample the node's RSS."""
    with tempfile.TemporaryDirectory() as home:
        node = NodeProcess(Path(home), {"SAYIT_MODEL": model, "SAYIT_ENGINE": engine, "SAYIT_BEAM_SIZE": str(beam),
                                        "SAYIT_MAX_DURATION_MINUTES": "120"})
        node.env.pop("MAX_CONCURRENT_CHUNKS", None)  # the engine's own default, as users run it
        node.start(timeout=600)
        try:
            with PeakRss(node.proc.pid) as rss, open(audio, "rb") as fh:
                started = time.perf_counter()
                response = httpx.post(node.url + "/v1/audio/transcriptions", timeout=3600,
                                      files={"file": ("audio.wav", fh)},
                                      data={"model": "whisper-1", "response_format": "verbose_json", "language": "en"})
                wall = time.perf_counter() - started
            response.raise_for_status()
            body = response.json()
        finally:
            node.stop()
    return {
        "wall": wall,
        "text": body["text"],
        "segment_lengths": [s["end"] - s["start"] for s in body["segments"]],
        "peak_rss_mb": rss.peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--audio", type=Path)
    parser.add_argument("--reference", type=Path, help="text file with the reference transcript")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of generated speech")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--engine", default="faster-whisper", help="SayIt engine: faster-whisper | mlx | auto")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--only", choices=["whole", "batched", "sayit"], action="append")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--_baseline", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._baseline:
        print(json.dumps(run_baseline(args._baseline, str(args.audio), args.model, args.beam)))
        return

    work = Path(tempfile.mkdtemp(prefix="sayit-bench-"))
    if args.audio is None:
        base = speak_paragraphs(PARAGRAPHS, work / "base.wav")
        args.audio, reference = long_speech(work / "speech.wav", args.minutes, base=base)
    else:
        reference = args.reference.read_text() if args.reference else None
    audio_seconds = duration_of(args.audio)
    print(f"audio: {args.audio} ({audio_seconds:.1f} s), model {args.model}, beam {args.beam}, cores {os.cpu_count()}")

    rows = {}
    for kind in args.only or ["whole", "batched", "sayit"]:
        if kind == "sayit":
            result = run_sayit(str(args.audio), args.model, args.engine, args.beam)
        else:
            out = subprocess.run([sys.executable, __file__, "--_baseline", kind, "--audio", str(args.audio),
                                  "--model", args.model, "--beam", str(args.beam)],
                                 check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
        result["speed"] = audio_seconds / result["wall"]
        result["wer"] = wer(reference, result["text"]) if reference else None
        result["median_segment"] = statistics.median(result["segment_lengths"]) if result["segment_lengths"] else 0
        rows[kind] = result
        print(f"  {kind:8s} {result['wall']:7.1f} s  {result['speed']:5.1f}x  WER {result['wer'] or 0:5.1f}%  "
              f"median seg {result['median_segment']:5.1f} s  peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)

    names = {"whole": "faster-whisper, whole file", "batched": "faster-whisper BatchedInferencePipeline (batch 8)",
             "sayit": f"SayIt node over HTTP ({args.engine})"}
    print("\n| run | wall s | audio-s / wall-s | vs batched | vs whole | WER % | median segment s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in rows.items():
        vs_b = r["speed"] / rows["batched"]["speed"] if "batched" in rows else float("nan")
        vs_w = r["speed"] / rows["whole"]["speed"] if "whole" in rows else float("nan")
        print(f"| {names[kind]} | {r['wall']:.1f} | {r['speed']:.1f} | {vs_b:.2f}x | {vs_w:.2f}x | "
              f"{r['wer'] if r['wer'] is not None else float('nan'):.1f} | {r['median_segment']:.1f} | {r['peak_rss_mb']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "segment_lengths"}
                                         for k, v in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
