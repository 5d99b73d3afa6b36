"""A stand-in engine that sleeps in proportion to the audio: for scheduling tests and benchmarks.

Never proof that transcription works; it exists so many nodes of known, different speeds fit
on a small machine. Its "transcript" names the chunk it was given, so stitching can be checked.
"""

from __future__ import annotations

import time

import numpy as np

from .base import SAMPLE_RATE, Segment, TranscribeOptions


class SimulatedEngine:
    name = "simulated"
    device = "cpu"

    def __init__(self, model_name: str, seconds_per_audio_second: float) -> None:
        self.model_name = model_name
        self.cost = seconds_per_audio_second

    @property
    def is_multilingual(self) -> bool:
        return True

    @property
    def supported_languages(self) -> list[str]:
        return ["en", "ko", "de", "fr", "es", "ja"]

    def detect_language(self, samples: np.ndarray) -> tuple[str, float]:
        return "en", 1.0

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> list[Segment]:
        seconds = len(samples) / SAMPLE_RATE
        time.sleep(seconds * self.cost)
        return [Segment(start=0.0, end=round(seconds, 3), text=f" [{seconds:.1f}s of audio]")]

    def close(self) -> None:
        pass
