"""Several chunks through CTranslate2 in one call, with timestamp tokens (sentence segments).

faster-whisper's `BatchedInferencePipeline` gets its speed from encoding and decoding several
30 s windows as one batch, but by default without timestamp tokens (one segment per window).
Here the same batched `encode` + `generate` runs WITH timestamps on chunks that were already cut
in silence (each at most 30 s, so one window each), and each chunk's tokens are split into
sentence-scale segments. A window whose batched result fails faster-whisper's own quality
checks (compression ratio, average log-probability) gets faster-whisper's temperature fallback
on its own (`fallback_window`); a window the model calls silence gives no segments, as in
faster-whisper.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

from .base import FALLBACK_TEMPERATURES

# faster-whisper's transcribe() defaults, so batched chunks are judged as single ones would be.
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
MAX_INITIAL_TIMESTAMP = 1.0  # seconds
MIN_RESUME = 0.6  # seconds of audio left after an open segment worth another window
MAX_ROUNDS = 4
# The encoder sees the longest piece of a batch plus this much padding, not always 30 s:
# CTranslate2 encodes any number of frames, and the encoder's cost grows with them (a 10.6 s
# piece: 0.43 s instead of 1.8 s with `base` on one core). With 1 s of padding the model was
# seen to loop at the end of a window; 5 s gave the full window's WER on the varied corpus.
CONTEXT_MARGIN = 5.0
# A window that failed gets more: a 1.5 s remainder with 5 s of padding looped at temperatures 0
# and 0.4 ("who needs one who needs one ...") and was right at both with 10 s.
FALLBACK_MARGIN = 10.0
FULL_WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames
# Whisper sometimes ends a window early after a finished segment and so drops the rest of the
# piece without a sign (tiny.en, a 27 s chunk of an unseen recording: one 4 s segment, 23 s of
# speech lost; faster-whisper's own loop skips such a rest too). A piece ends in silence at most
# ~0.7 s after its speech (the chunk plan's cut), so a window that ends EARLY_END_GAP or more
# before its piece, with EARLY_END_SPEECH of speech (Silero) after it, is resumed from there.
EARLY_END_GAP = 3.0  # seconds
EARLY_END_SPEECH = 1.5  # seconds
# Prompted with its chunk's text, a short remainder can make Whisper repeat that text instead of
# hearing the piece (base, a 1.2 s remainder saying "stars." gave 15 words of its prompt at
# temperature 0, which passed the quality checks). A window whose text is mostly one stretch of
# its prompt (COPY_SHARE of its letters, at least COPY_MIN_CHARS) does not pass the fallback's
# checks, and is kept only when every temperature gave one.
COPY_SHARE = 0.5
COPY_MIN_CHARS = 20
# Where a window's open segment starts, Whisper's timestamp can be late, inside the first word
# (tiny.en, a reshuffled file: resumed 0.2 s into "The museum opens at 10 in the morning", the
# remainder began "in the morning", 5 words lost). When the 20 ms at a resume point is LOUD_RATIO
# louder than the quietest 20 ms within RESUME_BACKOFF before it, the next round starts at that
# quietest one: in the pause before the sentence. (Moving every resume point made words repeat.)
RESUME_BACKOFF = 0.6  # seconds
LOUD_RATIO = 10.0  # 10 dB


def tokenizer_for(model, language: str | None, task: str):
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task=task, language=language or "en")


def context_frames(samples_list: list[np.ndarray], margin: float | None = None, sample_rate: int = 16000) -> int:
    """Mel frames the encoder sees for this batch: its longest piece + `margin` (default
    CONTEXT_MARGIN), even (the encoder's convolution halves them), at most the full 30 s window."""
    longest = max(len(s) for s in samples_list) / sample_rate
    margin = CONTEXT_MARGIN if margin is None else margin  # read at call time: tests set the constant
    return min(FULL_WINDOW_FRAMES, 2 * int(np.ceil((longest + margin) * 50)))


def features_for(model, samples: np.ndarray, frames: int = FULL_WINDOW_FRAMES) -> np.ndarray:
    from faster_whisper.audio import pad_or_trim

    return pad_or_trim(model.feature_extractor(samples)[..., :-1], frames)


def split_by_timestamps(tokens: list[int], timestamp_begin: int, precision: float,
                        duration: float) -> tuple[list[tuple[float, float, list[int]]], float | None]:
    """Segments (start, end, tokens) of one window, as faster-whisper splits them, and where
    to resume (seconds) when the window ended inside an unfinished segment (None: finished).

    Text between two timestamps is a segment. A window that ends with an open segment (two
    timestamps in a row, then more text or nothing) is resumed from the last timestamp, as
    faster-whisper's sequential loop seeks there; when less than MIN_RESUME of audio is left,
    the open text is kept as a segment up to the chunk's end instead.
    """
    ts = [t >= timestamp_begin for t in tokens]
    single_ending = len(tokens) >= 2 and not ts[-2] and ts[-1]
    consecutive = [i for i in range(1, len(tokens)) if ts[i] and ts[i - 1]]

    def time_of(token: int) -> float:
        return min((token - timestamp_begin) * precision, duration)

    if not consecutive:
        stamps = [t for t in tokens if t >= timestamp_begin]
        end = duration
        if stamps and stamps[-1] != timestamp_begin:
            end = time_of(stamps[-1])
        start = time_of(stamps[0]) if stamps and tokens and ts[0] else 0.0
        return ([(start, max(end, start), tokens)] if any(not t for t in ts) else []), None
    slices = list(consecutive) + ([len(tokens)] if single_ending else [])
    segments, last = [], 0
    for cut in slices:
        piece = tokens[last:cut]
        start, end = time_of(piece[0]) if ts[last] else 0.0, time_of(piece[-1]) if ts[cut - 1] else duration
        if any(not t for t in ts[last:cut]):
            segments.append((start, max(end, start), piece))
        last = cut
    if single_ending:
        return segments, None
    resume = time_of(tokens[last - 1])
    tail = tokens[last:]
    if duration - resume < MIN_RESUME:
        if any(t < timestamp_begin for t in tail):
            segments.append((resume, duration, tail))
        return segments, None
    return segments, resume


def speech_after(samples: np.ndarray, seconds: float, sample_rate: int = 16000) -> float:
    """Seconds of speech (Silero VAD, unpadded) in `samples` after `seconds`."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    rest = samples[int(seconds * sample_rate):]
    regions = get_speech_timestamps(rest, VadOptions(min_silence_duration_ms=250, speech_pad_ms=0))
    return sum(r["end"] - r["start"] for r in regions) / sample_rate


def ended_early(samples: np.ndarray, segments: list[dict], sample_rate: int = 16000) -> float | None:
    """Where to resume a finished window that stopped with speech still to come (None: it did not)."""
    end = segments[-1]["end"] if segments else 0.0
    if end <= 0 or len(samples) / sample_rate - end < EARLY_END_GAP:
        return None
    return end if speech_after(samples, end, sample_rate) >= EARLY_END_SPEECH else None


def quiet_point(samples: np.ndarray, seconds: float, sample_rate: int = 16000, earliest: float = 0.0) -> float:
    """`seconds`, or when the 20 ms there is LOUD_RATIO louder than the quietest 20 ms in the
    RESUME_BACKOFF before it, not before `earliest` (a resume inside a word), the middle of
    that quietest one."""
    frame = sample_rate // 50
    end = min(len(samples) - frame, int(round(seconds * sample_rate)))
    room = end - max(0, int(round(earliest * sample_rate)))
    count = min(room, int(RESUME_BACKOFF * sample_rate)) // frame
    if count < 2:
        return seconds
    start = end - count * frame
    energy = np.square(samples[start : end + frame].reshape(count + 1, frame), dtype=np.float64).mean(axis=1)
    quietest = int(np.argmin(energy[:-1]))
    if energy[-1] <= LOUD_RATIO * energy[quietest]:
        return seconds  # already in a pause (or no pause to go back to)
    return (start + quietest * frame + frame // 2) / sample_rate


def timed_by_alignment(model, tokenizer, samples: np.ndarray, tokens: list[int], sample_rate: int = 16000) -> list[int]:
    """An untimed window's `tokens` with a closing timestamp where forced alignment (faster-whisper's
    `find_alignment`, as for word timestamps) puts the end of its last word.

    A prompt can lead Whisper to write text with no timestamp after it and stop (tiny.en, 18-28 s
    chunks of an unseen recording, a one-sentence prompt: a sentence or two, then nothing; faster-
    whisper's own transcribe with that initial_prompt does the same). Read as one segment to the
    piece's end, the rest of the speech was lost without a trace; timed, an early end is resumed."""
    begin = tokenizer.timestamp_begin
    text = [t for t in tokens if t < tokenizer.eot]  # as faster-whisper aligns words: no special tokens
    if not text:
        return tokens
    content_frames = min(FULL_WINDOW_FRAMES, len(samples) * 100 // sample_rate)  # 10 ms mel frames
    (words,) = model.find_alignment(tokenizer, [text], _encode(model, [samples]), content_frames)
    if not words:
        return tokens
    end = min(float(words[-1]["end"]), len(samples) / sample_rate)
    return [*tokens, begin + int(round(end / model.time_precision))]


def copies_prompt(text: str, prompt: str | None) -> bool:
    """Whether `text` is mostly one stretch of `prompt` (Whisper repeating its prompt)."""
    if not prompt:
        return False
    said, before = _letters(text), _letters(prompt)
    if len(said) < COPY_MIN_CHARS:
        return False
    match = SequenceMatcher(None, said, before, autojunk=False).find_longest_match(0, len(said), 0, len(before))
    return match.size >= max(COPY_MIN_CHARS, COPY_SHARE * len(said))


def _letters(text: str) -> str:
    """Lower-case words, single spaces, no punctuation: what a copy is compared on."""
    return " ".join(re.findall(r"\w+", text.lower()))


def compression_ratio(text: str) -> float:
    from faster_whisper.transcribe import get_compression_ratio

    return get_compression_ratio(text)


def _encode(model, samples_list: list[np.ndarray], margin: float | None = None):
    frames = context_frames(samples_list, margin)
    return model.encode(np.stack([features_for(model, s, frames) for s in samples_list]))


def _decode(model, encoder_output, count: int, tokenizer, *, prompt: str | None, beam_size: int,
            temperature: float = 0.0, best_of: int = 5):
    """CTranslate2 generate with faster-whisper's options: beam search at temperature 0,
    the best of `best_of` samples above it (as its generate_with_fallback does)."""
    from faster_whisper.transcribe import get_suppressed_tokens

    previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
    base_prompt = model.get_prompt(tokenizer, previous, without_timestamps=False)
    if temperature > 0:
        search = {"beam_size": 1, "num_hypotheses": best_of, "sampling_topk": 0, "sampling_temperature": temperature}
    else:
        search = {"beam_size": beam_size, "patience": 1}
    return model.model.generate(
        encoder_output,
        [list(base_prompt) for _ in range(count)],
        length_penalty=1,
        repetition_penalty=1,
        no_repeat_ngram_size=0,
        max_length=model.max_length,
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        max_initial_timestamp_index=int(round(MAX_INITIAL_TIMESTAMP / model.time_precision)),
        **search,
    )


@dataclass
class _Window:
    """One decoded window and faster-whisper's verdict on it."""

    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float

    @classmethod
    def of(cls, result, tokenizer, temperature: float) -> "_Window":
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        return cls(tokens, avg_logprob, compression_ratio(tokenizer.decode(tokens).strip()),
                   result.no_speech_prob, temperature)

    @property
    def silent(self) -> bool:
        return self.no_speech_prob > NO_SPEECH_THRESHOLD and self.avg_logprob < LOG_PROB_THRESHOLD

    def untimed(self, timestamp_begin: int) -> bool:
        """Text that no timestamp follows: where it ends in the audio is unknown."""
        first_text = next((i for i, t in enumerate(self.tokens) if t < timestamp_begin), None)
        return first_text is not None and all(t < timestamp_begin for t in self.tokens[first_text:])

    @property
    def needs_fallback(self) -> bool:
        """Too repetitive or too improbable, and not silence (faster-whisper's checks)."""
        failed = self.compression_ratio > COMPRESSION_RATIO_THRESHOLD or self.avg_logprob < LOG_PROB_THRESHOLD
        return failed and not self.silent

    def result(self, model, tokenizer, samples: np.ndarray, sample_rate: int) -> tuple[list[dict], float | None]:
        """(segments, resume) as generate_round gives them."""
        if self.silent:
            return [], None  # silence (the rest of this chunk, if resumed)
        duration = len(samples) / sample_rate
        tokens = self.tokens
        if self.untimed(tokenizer.timestamp_begin):
            tokens = timed_by_alignment(model, tokenizer, samples, tokens, sample_rate)
        pieces, resume = split_by_timestamps(tokens, tokenizer.timestamp_begin, model.time_precision, duration)
        segments = []
        for start, end, seg_tokens in pieces:
            seg_text = tokenizer.decode(seg_tokens)
            if not seg_text.strip():
                continue
            segments.append({"start": start, "end": end, "text": seg_text, "tokens": seg_tokens,
                             "avg_logprob": self.avg_logprob, "compression_ratio": compression_ratio(seg_text),
                             "no_speech_prob": self.no_speech_prob, "temperature": self.temperature})
        if resume is None:
            resume = ended_early(samples, segments, sample_rate)
        if resume is not None:
            # Not back into the last finished segment: its words would be heard twice.
            resume = quiet_point(samples, resume, sample_rate, segments[-1]["start"] if segments else 0.0)
            for segment in segments:  # the last one ended where the next round now starts
                segment["end"] = max(segment["start"], min(segment["end"], resume))
        return segments, resume


FAILED = "failed"  # a window failed the quality checks: it needs the temperature fallback


def generate_round(model, samples_list: list[np.ndarray], *, language: str | None, task: str, beam_size: int,
                   prompt: str | None, sample_rate: int = 16000) -> list:
    """One batched encode + generate over pieces (each <= 30 s). Per piece: FAILED, or
    (segments, resume): segment dicts (start, end, text, tokens, avg_logprob, compression_ratio,
    no_speech_prob, temperature) relative to the piece, and where to go on (seconds into the
    piece) when the window ended inside an open segment (None: the piece is done; [] segments:
    silence)."""
    tokenizer = tokenizer_for(model, language, task)
    results = _decode(model, _encode(model, samples_list), len(samples_list), tokenizer,
                      prompt=prompt, beam_size=beam_size)
    out: list = []
    for samples, result in zip(samples_list, results):
        window = _Window.of(result, tokenizer, 0.0)
        out.append(FAILED if window.needs_fallback else window.result(model, tokenizer, samples, sample_rate))
    return out


def fallback_window(model, samples: np.ndarray, *, language: str | None, task: str, beam_size: int,
                    prompt: str | None, sample_rate: int = 16000):
    """faster-whisper's temperature fallback for one window that failed its batched decode:
    beam search, then sampled at each temperature in turn until a result passes the checks,
    else the most probable one that is not too repetitive (generate_with_fallback's choice).
    A result that repeats its prompt (copies_prompt) does not pass, and is the last choice.
    Same result shape as generate_round's. Unlike `WhisperModel.transcribe`, the encoder runs
    on the piece + FALLBACK_MARGIN rather than a padded 30 s window (base, one core: 0.3 s
    instead of 1.5 s for a short remainder)."""
    tokenizer = tokenizer_for(model, language, task)
    encoder_output = _encode(model, [samples], FALLBACK_MARGIN)
    tried, copies = [], []
    for temperature in FALLBACK_TEMPERATURES:
        (result,) = _decode(model, encoder_output, 1, tokenizer, prompt=prompt, beam_size=beam_size,
                            temperature=temperature)
        window = _Window.of(result, tokenizer, temperature)
        copied = copies_prompt(tokenizer.decode(window.tokens), prompt)
        if not window.needs_fallback and not copied:
            break
        (copies if copied else tried).append(window)
    else:
        # Only when every temperature repeated the prompt is a repeat kept: the speaker may
        # really have said it again, and nothing else was heard.
        tried = tried or copies
        window = max([w for w in tried if w.compression_ratio <= COMPRESSION_RATIO_THRESHOLD] or tried,
                     key=lambda w: w.avg_logprob)
    return window.result(model, tokenizer, samples, sample_rate)
