"""faster-whisper (CTranslate2) engine: the default on x86 and Linux."""

from __future__ import annotations

import logging
import threading

import numpy as np

from .base import SAMPLE_RATE, Segment, TranscribeOptions, Word

log = logging.getLogger(__name__)

# faster-whisper's own temperature fallback, used when the client asks for temperature 0.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(
        self,
        model_dir: str,
        model_name: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        parallel_chunks: int = 1,
        cores: int = 1,
    ) -> None:
        from faster_whisper import WhisperModel

        # Measured here: N chunks in N threads on ONE model (num_workers=N, one core each)
        # beats both cpu_threads=N on one call and the batched pipeline.
        self.parallel_chunks = max(1, parallel_chunks)
        cpu_threads = max(1, cores // self.parallel_chunks)
        self.model_name = model_name
        self.device = device
        self._model = WhisperModel(
            str(model_dir),
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=self.parallel_chunks,
        )
        self._languages = list(self._model.supported_languages)
        self._lock = threading.Lock()
        log.info(
            "faster-whisper loaded %s (%s, %s, %d workers x %d threads)",
            model_name, device, compute_type, self.parallel_chunks, cpu_threads,
        )

    @property
    def is_multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    @property
    def supported_languages(self) -> list[str]:
        return self._languages

    def detect_language(self, samples: np.ndarray) -> tuple[str, float]:
        if not self.is_multilingual:
            return "en", 1.0
        language, probability, _ = self._model.detect_language(samples[: 30 * SAMPLE_RATE])
        return language, float(probability)

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> list[Segment]:
        temperature = FALLBACK_TEMPERATURES if options.temperature == 0 else options.temperature
        segments, _info = self._model.transcribe(
            samples,
            language=options.language,
            task=options.task,
            beam_size=options.beam_size,
            temperature=temperature,
            initial_prompt=options.prompt or None,
            word_timestamps=options.word_timestamps,
            vad_filter=False,  # chunks are already cut at silences by the job pipeline
        )
        return [
            Segment(
                start=round(s.start, 3),
                end=round(s.end, 3),
                text=s.text,
                tokens=list(s.tokens),
                temperature=float(s.temperature or 0.0),
                avg_logprob=float(s.avg_logprob),
                compression_ratio=float(s.compression_ratio),
                no_speech_prob=float(s.no_speech_prob),
                words=None
                if s.words is None
                else [Word(round(w.start, 3), round(w.end, 3), w.word, float(w.probability)) for w in s.words],
            )
            for s in segments
        ]

    def close(self) -> None:
        self._model = None  # CTranslate2 frees the model when the last reference goes
