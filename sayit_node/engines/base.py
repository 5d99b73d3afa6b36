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
# Whisper's temperature fallback (faster-whisper, mlx-whisper and OpenAI's), used when the client
# asks for temperature 0: beam search at 0, then sampled, hotter each time.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class EngineError(Exception):
    """A problem the user can act on (bad model, unsupported language, ...)."""


class ModelNotAvailable(EngineError):
    """The model cannot be found locally and cannot be downloaded."""


class UnsupportedLanguage(EngineError):
    """The model cannot transcribe the requested language (e.g. an English-only model)."""


class UnknownLanguage(UnsupportedLanguage):
    """The language code is not one Whisper knows at all."""


class UnsupportedTask(EngineError):
    """The model cannot do the requested task (translation with an English-only model)."""


# Every language code Whisper knows (as in faster_whisper.tokenizer and mlx_whisper).
WHISPER_LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr "
    "ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa "
    "pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh yue".split()
)


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
    if language not in WHISPER_LANGUAGES:
        raise UnknownLanguage(f"unknown language '{language}': use an ISO 639-1 code Whisper knows "
                              "(for example en, de, fr, ja) or leave it empty to detect it")
    if not engine.is_multilingual and language != "en":
        raise UnsupportedLanguage(
            f"model '{engine.model_name}' is English-only and cannot transcribe language '{language}'; "
            "use a multilingual model (for example SAYIT_MODEL=base)"
        )
    if language not in engine.supported_languages:
        raise UnsupportedLanguage(f"language '{language}' is not supported by model '{engine.model_name}'")


def check_task(engine: Engine, task: str) -> None:
    """Raise UnsupportedTask if the engine cannot do `task` (an English-only model cannot translate)."""
    if task == "translate" and not engine.is_multilingual:
        raise UnsupportedTask(
            f"model '{engine.model_name}' is English-only and cannot translate; "
            "use a multilingual model (for example SAYIT_MODEL=base)"
        )
