"""Multi-speaker conversations from espeak-ng voices, with the reference of who spoke when.

Each turn is 1-4 sentences (2-20 s) by one voice; turns are separated by 0.3-0.9 s of silence.
Voices differ in espeak voice (language and variant) and pitch (`-p`); all read English text.
The reference marks each sentence's sound (leading and trailing silence trimmed).
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .speech import PARAGRAPHS

SR = 16_000

# (espeak voice, pitch 0-99, words per minute): clearly different people. Chosen as mutually
# distant for the speaker encoder on text the conversations don't use (largest centroid cosine
# between any two: 0.80; one voice's two halves: 0.98-0.99).
VOICES = [
    ("en-us", 35, 160),  # American English, low
    ("fr+f4", 60, 155),  # French voice (female variant) reading English
    ("en+david", 40, 160),  # British English variant "david"
    ("en+Annie", 80, 165),  # English variant "Annie", high
]
# Closer pairs, kept for the bench's --voices close: en-us vs de+m3 0.92, en-gb+f2 vs en-us 0.88.
CLOSE_VOICES = [
    ("en-us", 35, 160),
    ("en-gb+f2", 75, 170),
    ("de+m3", 50, 150),
    ("fr+f4", 60, 155),
]


@dataclass
class RefTurn:
    start: float
    end: float
    speaker: str
    text: str


def sentences() -> list[str]:
    out = []
    for p in PARAGRAPHS:
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", p) if s.strip()]
    return out


def _say(text: str, voice: tuple[str, int, int], tmp: Path) -> np.ndarray:
    from sayit_node.audio import decode

    name, pitch, wpm = voice
    path = tmp / "s.wav"
    subprocess.run(["espeak-ng", "-v", name, "-p", str(pitch), "-s", str(wpm), "-w", str(path), text],
                   check=True, capture_output=True)
    samples = decode(str(path))
    loud = np.where(np.abs(samples) > 0.01)[0]
    return samples[loud[0]:loud[-1] + 1] if loud.size else samples


def make_conversation(out: Path, n_speakers: int, seconds: float, *, seed: int = 0,
                      max_turn: float = 20.0, min_turn: float = 2.0, voices: list | None = None) -> list[RefTurn]:
    """Write a 16 kHz wav of about `seconds` to `out`; return the reference sentences."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (./scripts/test installs it)")
    rng = random.Random(seed)
    pool = sentences()
    voices = (voices or VOICES)[:n_speakers]
    pieces: list[np.ndarray] = []
    ref: list[RefTurn] = []
    t = 0.0
    speaker = rng.randrange(n_speakers)
    k = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        while t < seconds:
            target = rng.uniform(min_turn, max_turn)
            turn_len = 0.0
            n_sent = 0
            while turn_len < target and n_sent < 4:
                text = pool[k % len(pool)]
                k += 1
                audio = _say(text, voices[speaker], tmp)
                if n_sent and turn_len + len(audio) / SR > max_turn:
                    break
                if len(audio) / SR > max_turn:
                    audio = audio[:int(max_turn * SR)]
                if n_sent:
                    pause = np.zeros(int(0.25 * SR), np.float32)
                    pieces.append(pause)
                    t += len(pause) / SR
                    turn_len += len(pause) / SR
                pieces.append(audio)
                ref.append(RefTurn(t, t + len(audio) / SR, f"S{speaker + 1}", text))
                t += len(audio) / SR
                turn_len += len(audio) / SR
                n_sent += 1
            gap = np.zeros(int(rng.uniform(0.3, 0.9) * SR), np.float32)
            pieces.append(gap)
            t += len(gap) / SR
            speaker = rng.choice([s for s in range(n_speakers) if s != speaker] or [speaker])
    samples = np.concatenate(pieces)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())
    return ref
