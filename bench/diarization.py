"""Diarization benchmark: DER, speakers found and time added, on espeak-ng conversations.

    flock /tmp/sayit-bench.lock .venv/bin/python bench/diarization.py   # 2 and 3 voices, 4 min, 3 rounds
    .venv/bin/python bench/diarization.py --minutes 6 --voices close --rounds 2

Builds conversations of 2 and 3 clearly different espeak-ng voices taking turns (turns of
2-20 s, 0.3-0.9 s between turns, the speaker count is not given to the node), then against a
real node (tiny.en, MAX_CONCURRENT_CHUNKS = cores) runs each file with and without diarization,
interleaved, `--rounds` times (median wall time per mode). Reports:

- DER (tests/der.py, md-eval rules: 0.25 s collar each side of reference boundaries; also without
  collar) of what users get: diarized_json segments with their speakers. And the DER of the
  speaker timeline itself (window cores, before labelling segments), computed in this process
  from the same model and code the node runs.
- the number of speakers found;
- time added: (wall with diarization - wall without) / wall without, end to end over HTTP, and
  the same in seconds; and the CPU seconds of the diarization work itself (VAD + embeddings for
  every chunk, clustering) measured in this process, as a share of the transcription wall time.
  The time added is a ratio: the diarization work depends on the audio length, the
  transcription time also on what Whisper does with it (the 2-voice file takes tiny.en ~2.5x
  longer than the 3-voice one), so compare the seconds too.
- the load average before and after (other work on the machine skews every wall time).
Results go to bench/results/diarization.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import NodeProcess  # noqa: E402
from tests.conversation import CLOSE_VOICES, VOICES, make_conversation  # noqa: E402
from tests.der import der  # noqa: E402


def request(node: NodeProcess, path: Path, diarize: bool) -> tuple[float, dict]:
    data = {"model": "whisper-1", "language": "en",
            "response_format": "diarized_json" if diarize else "verbose_json"}
    with open(path, "rb") as fh:
        started = time.perf_counter()
        response = httpx.post(node.url + "/v1/audio/transcriptions", timeout=3600,
                              files={"file": (path.name, fh)}, data=data)
        wall = time.perf_counter() - started
    response.raise_for_status()
    return wall, response.json()


def in_process_diarization(path: Path) -> dict:
    """The node's diarization steps run here, timed: VAD + embeddings per chunk, then clustering."""
    from sayit_node.audio import decode, plan_chunks
    from sayit_node.diarize import Windows, diarize
    from sayit_node.diarize.embedder import SpeakerEmbedder
    from sayit_node.diarize.models import BUNDLED

    samples = decode(str(path))
    embedder = SpeakerEmbedder(BUNDLED["ge2e"])
    windows = []
    t0 = time.process_time()
    for chunk in plan_chunks(samples):
        piece = samples[chunk.start:chunk.end]
        w = embedder.embed_speech(piece)
        offset = chunk.start / 16000
        windows.append(Windows([(a + offset, b + offset) for a, b in w.cores], w.embeddings))
    embed_cpu = time.process_time() - t0
    t1 = time.process_time()
    result = diarize(windows)
    cluster_cpu = time.process_time() - t1
    return {"windows": sum(len(w) for w in windows), "embed_cpu_s": embed_cpu, "cluster_cpu_s": cluster_cpu,
            "timeline": [(t.start, t.end, t.speaker) for t in result.timeline], "speakers": result.speakers}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--speakers", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--voices", choices=["distinct", "close"], default="distinct")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "diarization.json")
    args = parser.parse_args()
    voices = VOICES if args.voices == "distinct" else CLOSE_VOICES
    load_before = os.getloadavg()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {}
        for n in args.speakers:
            path = tmp / f"conversation-{n}.wav"
            ref = make_conversation(path, n, args.minutes * 60, seed=args.seed + n, voices=voices)
            files[n] = (path, [(r.start, r.end, r.speaker) for r in ref])
            print(f"{n} voices: {ref[-1].end:.0f} s, {len(ref)} sentences, "
                  f"{len({r.speaker for r in ref})} speakers ({', '.join(v[0] for v in voices[:n])})", flush=True)
        node = NodeProcess(tmp / "node", {"SAYIT_MODEL": args.model, "MAX_CONCURRENT_CHUNKS": str(cores),
                                          "SAYIT_MAX_DURATION_MINUTES": "120"}).start(timeout=600)
        try:
            request(node, files[args.speakers[0]][0], True)  # warm-up: loads both models
            for n, (path, ref) in files.items():
                walls = {False: [], True: []}
                body = None
                for r in range(args.rounds):
                    for mode in ((False, True) if r % 2 == 0 else (True, False)):
                        wall, out = request(node, path, mode)
                        walls[mode].append(wall)
                        if mode:
                            body = out
                hyp = [(s["start"], s["end"], s["speaker"]) for s in body["segments"]]
                seg = der(ref, hyp, collar=0.25)
                seg0 = der(ref, hyp, collar=0.0)
                local = in_process_diarization(path)
                tl = der(ref, local["timeline"], collar=0.25)
                off, on = statistics.median(walls[False]), statistics.median(walls[True])
                row = {
                    "voices": n, "voice_set": args.voices, "audio_s": round(body["duration"], 1),
                    "speakers_found": len({s["speaker"] for s in body["segments"]}),
                    "der_segments_collar025": round(seg.der, 4), "der_segments_no_collar": round(seg0.der, 4),
                    "miss_s": round(seg.miss, 2), "false_alarm_s": round(seg.false_alarm, 2),
                    "confusion_s": round(seg.confusion, 2),
                    "der_timeline_collar025": round(tl.der, 4), "timeline_speakers": local["speakers"],
                    "wall_without_s": round(off, 2), "wall_with_s": round(on, 2),
                    "time_added": round((on - off) / off, 3), "added_s": round(on - off, 2),
                    "diarize_cpu_s": round(local["embed_cpu_s"] + local["cluster_cpu_s"], 2),
                    "diarize_cpu_share": round((local["embed_cpu_s"] + local["cluster_cpu_s"]) / off, 3),
                    "cluster_cpu_s": round(local["cluster_cpu_s"], 3), "windows": local["windows"],
                    "walls": {"without": [round(w, 2) for w in walls[False]], "with": [round(w, 2) for w in walls[True]]},
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            node.stop()
    print()
    print(f"{'voices':>6} {'audio s':>8} {'found':>5} {'DER seg':>8} {'DER 0c':>7} {'DER tl':>7} "
          f"{'without s':>9} {'with s':>7} {'added':>6} {'added s':>7} {'CPU share':>9}")
    for r in rows:
        print(f"{r['voices']:>6} {r['audio_s']:>8} {r['speakers_found']:>5} {r['der_segments_collar025']:>8.2%} "
              f"{r['der_segments_no_collar']:>7.2%} {r['der_timeline_collar025']:>7.2%} {r['wall_without_s']:>9} "
              f"{r['wall_with_s']:>7} {r['time_added']:>6.1%} {r['added_s']:>7} {r['diarize_cpu_share']:>9.1%}")
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cores": cores,
                                    "load_average": load, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
