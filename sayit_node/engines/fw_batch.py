"""Several chunks through CTranslate2 in one call, with timestamp tokens (sentence segments).

faster-whisper's `BatchedInferencePipeline` gets its speed from encoding and decoding several
30 s windows as one batch, but by default without timestamp tokens (one segment per window).
Here the same batched `encode` + `generate` runs WITH timestamps on chunks that were already cut
in silence (each at most 30 s, so one window each), and each chunk's tokens are split into
sentence-scale segments. A chunk whose batched result fails faster-whisper's own quality
checks (compression ratio, average log-probability) is run again on its own through
`WhisperModel.transcribe`, which has the temperature fallback; a chunk the model calls silence
gives no segments, as in faster-whisper.
"""

from __future__ import annotations

import numpy as np

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
FULL_WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames


def tokenizer_for(model, language: str | None, task: str):
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task=task, language=language or "en")


def context_frames(samples_list: list[np.ndarray], sample_rate: int = 16000) -> int:
    """Mel frames the encoder sees for this batch: its longest piece + CONTEXT_MARGIN, even
    (the encoder's convolution halves them), at most the full 30 s window."""
    longest = max(len(s) for s in samples_list) / sample_rate
    return min(FULL_WINDOW_FRAMES, 2 * int(np.ceil((longest + CONTEXT_MARGIN) * 50)))


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


def compression_ratio(text: str) -> float:
    from faster_whisper.transcribe import get_compression_ratio

    return get_compression_ratio(text)


def _generate(model, samples_list, tokenizer, *, beam_size: int, prompt: str | None):
    from faster_whisper.transcribe import get_suppressed_tokens

    frames = context_frames(samples_list)
    features = np.stack([features_for(model, s, frames) for s in samples_list])
    encoder_output = model.encode(features)
    previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
    base_prompt = model.get_prompt(tokenizer, previous, without_timestamps=False)
    return model.model.generate(
        encoder_output,
        [list(base_prompt) for _ in samples_list],
        beam_size=beam_size,
        patience=1,
        length_penalty=1,
        repetition_penalty=1,
        no_repeat_ngram_size=0,
        max_length=model.max_length,
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        max_initial_timestamp_index=int(round(MAX_INITIAL_TIMESTAMP / model.time_precision)),
    )


FAILED = "failed"  # a window failed the quality checks: the chunk needs the temperature fallback


def generate_round(model, samples_list: list[np.ndarray], *, language: str | None, task: str, beam_size: int,
                   prompt: str | None, sample_rate: int = 16000) -> list:
    """One batched encode + generate over pieces (each <= 30 s). Per piece: FAILED, or
    (segments, resume): segment dicts (start, end, text, tokens, avg_logprob, compression_ratio,
    no_speech_prob) relative to the piece, and where to go on (seconds into the piece) when
    the window ended inside an open segment (None: the piece is done; [] segments: silence)."""
    tokenizer = tokenizer_for(model, language, task)
    results = _generate(model, samples_list, tokenizer, beam_size=beam_size, prompt=prompt)
    out: list = []
    for samples, result in zip(samples_list, results):
        tokens = result.sequences_ids[0]
        seq_len = len(tokens)
        avg_logprob = result.scores[0] * seq_len / (seq_len + 1)
        text = tokenizer.decode(tokens).strip()
        ratio = compression_ratio(text)
        if result.no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOG_PROB_THRESHOLD:
            out.append(([], None))  # silence (the rest of this chunk, if resumed)
            continue
        if ratio > COMPRESSION_RATIO_THRESHOLD or avg_logprob < LOG_PROB_THRESHOLD:
            out.append(FAILED)
            continue
        duration = len(samples) / sample_rate
        pieces, resume = split_by_timestamps(tokens, tokenizer.timestamp_begin, model.time_precision, duration)
        segments = []
        for start, end, seg_tokens in pieces:
            seg_text = tokenizer.decode(seg_tokens)
            if not seg_text.strip():
                continue
            segments.append({"start": start, "end": end, "text": seg_text, "tokens": seg_tokens,
                             "avg_logprob": avg_logprob, "compression_ratio": compression_ratio(seg_text),
                             "no_speech_prob": result.no_speech_prob})
        out.append((segments, resume))
    return out

