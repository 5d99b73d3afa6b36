"""The Engine protocol every speech engine implements, and the typed results it returns.

An engine transcribes one chunk of 16 kHz mono float32 samples at a time. Timestamps it
returns are relative to the start of that chunk; the job pipeline shifts them by the chunk's
offset when it stitches the transcript together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

SAMPLE_RATE = 16_000


class EngineError(Exception):
    """A problem the user can act on (bad model, unsupported language, ...)."""


class ModelNotAvailable(EngineError):
    """The model cannot be found locally and cannot be downloaded."""


class UnsupportedLanguage(EngineError):
    """The model cannot transcribe the requested language (e.g. an English-only model)."""


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float = 0.0


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] | None = None

    def shifted(self, offset: float) -> "Segment":
        """The same segment with every timestamp moved by `offset` seconds."""
        words = None
        if self.words is not None:
            words = [Word(w.start + offset, w.end + offset, w.word, w.probability) for w in self.words]
        return Segment(
            start=self.start + offset,
            end=self.end + offset,
            text=self.text,
            tokens=list(self.tokens),
            temperature=self.temperature,
            avg_logprob=self.avg_logprob,
            compression_ratio=self.compression_ratio,
            no_speech_prob=self.no_speech_prob,
            words=words,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Segment":
        words = data.get("words")
        return cls(
            **{k: v for k, v in data.items() if k != "words"},
            words=None if words is None else [Word(**w) for w in words],
        )


@dataclass(frozen=True)
class TranscribeOptions:
    """Options for one chunk. `language` is always set by the job pipeline (pinned per job)."""

    language: str | None = None
    task: str = "transcribe"  # or "translate" (to English)
    beam_size: int = 5
    temperature: float = 0.0
    prompt: str | None = None
    word_timestamps: bool = False


@runtime_checkable
class Engine(Protocol):
    """A loaded speech model. Implementations must be safe to call from several threads."""

    name: str  # engine id: "faster-whisper", "mlx", ...
    model_name: str  # the model it serves, e.g. "tiny.en"
    device: str  # "cpu", "cuda", "metal", ...

    @property
    def is_multilingual(self) -> bool: ...

    @property
    def supported_languages(self) -> list[str]: ...

    def detect_language(self, samples: np.ndarray) -> tuple[str, float]:
        """Most likely language code of (the first 30 s of) `samples`, and its probability."""
        ...

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> list[Segment]:
        """Transcribe one chunk; timestamps relative to the chunk start."""
        ...

    def close(self) -> None: ...


def check_language(engine: Engine, language: str | None) -> None:
    """Raise UnsupportedLanguage if the engine cannot do `language`."""
    if language is None:
        return
    if not engine.is_multilingual and language != "en":
        raise UnsupportedLanguage(
            f"model '{engine.model_name}' is English-only and cannot transcribe language '{language}'; "
            "use a multilingual model (for example SAYIT_MODEL=base)"
        )
    if language not in engine.supported_languages:
        raise UnsupportedLanguage(f"language '{language}' is not supported by model '{engine.model_name}'")
