"""sayit_node.audio on real files: decoding every common container, rejecting bad uploads, and
the chunk plan (cuts only in silence, exact sample offsets, tail merging, determinism).

Every fixture is made here from espeak-ng speech, sox and PyAV's own encoders (no ffmpeg
binary is needed). A format is skipped only when PyAV's bundled FFmpeg has no encoder for it.
"""

from __future__ import annotations

import io
import re
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from sayit_node import audio
from sayit_node.audio import MAX_CHUNK_SECONDS, MAX_MERGED_SECONDS, MIN_TAIL_SECONDS, AudioError, Chunk

try:
    from tests.speech import PARAGRAPHS, duration_of, speak
except ImportError:  # tests/ on sys.path as a plain directory
    from speech import PARAGRAPHS, duration_of, speak

SR = audio.SAMPLE_RATE
SENTENCE = "The quick brown fox jumps over the lazy dog."


# --- fixtures: speech and encoders -----------------------------------------------------------

def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").copy(), w.getframerate()


def _first_encoder(*names: str) -> str | None:
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # UnknownCodecError: not built into PyAV's FFmpeg
            continue
    return None


def encode(samples: np.ndarray, rate: int, path: Path, container: str, codec: str, *,
           out_rate: int | None = None, channels: int = 1, options: dict | None = None) -> Path:
    """Encode int16 mono `samples` at `rate` with PyAV (the same signal on every channel)."""
    out_rate = out_rate or rate
    layout = "mono" if channels == 1 else "stereo"
    data = np.repeat(samples[:, None], channels, axis=1).reshape(1, -1)  # packed s16
    frame = av.AudioFrame.from_ndarray(data, format="s16", layout=layout)
    frame.sample_rate = rate
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate, layout=layout)
        if options:
            stream.codec_context.options = options
        ctx = stream.codec_context
        fmt = ctx.format.name if ctx.format is not None else ctx.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=out_rate, frame_size=ctx.frame_size or None)
        pts = 0
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            piece.pts = pts
            pts += piece.samples
            for packet in stream.encode(piece):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def sentence(tmp_path_factory) -> tuple[Path, np.ndarray, int, float]:
    """About 3 s of espeak-ng speech: (wav, int16 samples, rate, duration by soxi)."""
    path = speak(SENTENCE, tmp_path_factory.mktemp("sentence") / "sentence.wav")
    samples, rate = _read_wav(path)
    return path, samples, rate, duration_of(path)


# (id, container, encoder candidates, output rate, channels, codec options)
FORMATS = [
    ("wav", "wav", ("pcm_s16le",), None, 1, None),
    ("mp3", "mp3", ("libmp3lame", "mp3"), None, 1, None),
    ("m4a-aac", "ipod", ("aac",), None, 1, None),
    ("flac", "flac", ("flac",), None, 1, None),
    ("ogg-opus", "ogg", ("libopus", "opus"), 48000, 1, {"strict": "experimental"}),
    # FFmpeg's own vorbis encoder is experimental and stereo-only; libvorbis is not bundled.
    ("ogg-vorbis", "ogg", ("libvorbis", "vorbis"), 44100, 2, {"strict": "experimental"}),
    ("webm-opus", "webm", ("libopus", "opus"), 48000, 1, {"strict": "experimental"}),
    ("mp4-aac", "mp4", ("aac",), None, 1, None),
    ("wav-stereo-44k", "wav", ("pcm_s16le",), 44100, 2, None),
    ("m4a-aac-stereo-44k", "ipod", ("aac",), 44100, 2, None),
]


@pytest.fixture(scope="module", params=FORMATS, ids=[f[0] for f in FORMATS])
def encoded(request, sentence, tmp_path_factory) -> tuple[Path, float]:
    name, container, candidates, out_rate, channels, options = request.param
    codec = _first_encoder(*candidates)
    if codec is None:
        pytest.skip(f"PyAV's FFmpeg has no encoder for {name} (tried {', '.join(candidates)})")
    _, samples, rate, duration = sentence
    suffix = {"ipod": "m4a", "matroska": "mkv"}.get(container, container)
    path = tmp_path_factory.mktemp("formats") / f"{name}.{suffix}"
    encode(samples, rate, path, container, codec, out_rate=out_rate, channels=channels, options=options)
    with av.open(str(path)) as check:  # the fixture really is what it claims to be
        stream = check.streams.audio[0]
        assert stream.channels == channels
        assert stream.rate == (out_rate or rate)
    return path, duration


def _envelope(x: np.ndarray) -> np.ndarray:
    frames = x[: x.size // 160 * 160].reshape(-1, 160)
    return np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))


# --- decoding --------------------------------------------------------------------------------

def test_sentence_is_about_three_seconds(sentence):
    _, _, _, duration = sentence
    assert 2.0 < duration < 4.5


@pytest.mark.parametrize("as_file", [False, True], ids=["path", "fileobj"])
def test_decode_every_container(encoded, sentence, as_file):
    path, duration = encoded
    source = io.BytesIO(path.read_bytes()) if as_file else str(path)
    samples = audio.decode(source)
    assert isinstance(samples, np.ndarray)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / SR - duration) <= 0.1
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0

    # It is the same speech at the same level (stereo is downmixed, not summed or halved):
    # the 10 ms loudness envelope matches the espeak-ng original, allowing a codec delay.
    reference = audio.decode(str(sentence[0]))
    a, b = _envelope(reference), _envelope(samples)
    best = 0.0
    for lag in range(0, 8):  # up to 70 ms of encoder delay
        n = min(a.size, b.size - lag)
        best = max(best, float(np.corrcoef(a[:n], b[lag : lag + n])[0, 1]))
    assert best > 0.9
    ratio = np.sqrt(np.mean(samples.astype(np.float64) ** 2) / np.mean(reference.astype(np.float64) ** 2))
    assert 0.7 < ratio < 1.4

    # The job store keeps chunks as pcm16: a decoded recording is stored bit for bit, so the
    # worker hears exactly what was uploaded.
    np.testing.assert_array_equal(audio.from_pcm16(audio.to_pcm16(samples)), samples)

    if as_file:
        source.seek(0)
    probed = audio.probe_duration(source)
    assert probed is not None and abs(probed - duration) <= 0.1
    if as_file:
        assert source.tell() == 0  # probe rewinds, so decode can read the same upload


def test_decode_survives_format_changes_midstream(sentence, tmp_path):
    """Two MP3s of different rate and channel count joined byte-wise (as some podcast tools
    and stream recorders produce): the decoder's output format changes midway."""
    codec = _first_encoder("libmp3lame", "mp3")
    if codec is None:
        pytest.skip("PyAV's FFmpeg has no MP3 encoder")
    _, samples, rate, duration = sentence
    a = encode(samples, rate, tmp_path / "a.mp3", "mp3", codec)
    b = encode(samples, rate, tmp_path / "b.mp3", "mp3", codec, out_rate=44100, channels=2)
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    decoded = audio.decode(str(joined))
    assert abs(decoded.size / SR - 2 * duration) <= 0.15
    # Both halves carry the speech (the second is not dropped or garbled).
    half = decoded.size // 2
    assert np.abs(decoded[:half]).max() > 0.3 and np.abs(decoded[half:]).max() > 0.3


# --- bad input ------------------------------------------------------------------------------

def _video_only(path: Path, container: str, codec: str, pix_fmt: str = "yuv420p") -> Path:
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        for i in range(10):
            image = np.full((48, 64, 3), i * 20, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _bad_empty(tmp: Path, wav: Path) -> Path:
    (tmp / "empty.wav").write_bytes(b"")
    return tmp / "empty.wav"


def _bad_random(tmp: Path, wav: Path) -> Path:
    (tmp / "random.mp3").write_bytes(np.random.default_rng(7).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return tmp / "random.mp3"


def _bad_text(tmp: Path, wav: Path) -> Path:
    (tmp / "notes.md").write_text("This is a text file, not a recording.\n" * 100)
    return tmp / "notes.md"


def _bad_truncated_header(tmp: Path, wav: Path) -> Path:
    (tmp / "truncated.wav").write_bytes(wav.read_bytes()[:30])  # cut inside the fmt chunk
    return tmp / "truncated.wav"


def _bad_header_only(tmp: Path, wav: Path) -> Path:
    (tmp / "header_only.wav").write_bytes(wav.read_bytes()[:44])  # RIFF header, no samples
    return tmp / "header_only.wav"


def _bad_mkv_video(tmp: Path, wav: Path) -> Path:
    return _video_only(tmp / "video.mkv", "matroska", _first_encoder("ffv1", "mpeg4") or "ffv1")


def _bad_mp4_video(tmp: Path, wav: Path) -> Path:
    return _video_only(tmp / "video.mp4", "mp4", _first_encoder("mpeg4", "libx264", "mjpeg") or "mpeg4")


BAD_INPUTS: list[tuple[str, Callable[[Path, Path], Path], str]] = [
    ("empty", _bad_empty, "invalid_audio"),
    ("random-bytes", _bad_random, "invalid_audio"),
    ("text", _bad_text, "invalid_audio"),
    ("truncated-wav-header", _bad_truncated_header, "invalid_audio"),
    ("wav-header-without-samples", _bad_header_only, "invalid_audio"),
    ("video-only-mkv", _bad_mkv_video, "no_audio_stream"),
    ("video-only-mp4", _bad_mp4_video, "no_audio_stream"),
]


@pytest.mark.parametrize("as_file", [False, True], ids=["path", "fileobj"])
@pytest.mark.parametrize("make,code", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_audio_error(make, code, as_file, sentence, tmp_path):
    path = make(tmp_path, sentence[0])

    def source():
        return io.BytesIO(path.read_bytes()) if as_file else str(path)

    with pytest.raises(AudioError) as info:
        audio.decode(source())
    assert info.value.code == code
    if path.name == "header_only.wav":
        return  # probe_duration may report the header's claimed length; decode is what must fail
    with pytest.raises(AudioError) as info:
        audio.probe_duration(source())
    assert info.value.code == code


def test_text_file_named_txt(tmp_path):
    """FFmpeg reads *.txt paths as 'tty' (ANSI art) video: still an AudioError, just with the
    no-audio-stream code. Uploads arrive as file objects and get invalid_audio."""
    path = tmp_path / "notes.txt"
    path.write_text("This is a text file, not a recording.\n" * 100)
    for fn in (audio.decode, audio.probe_duration):
        with pytest.raises(AudioError) as info:
            fn(str(path))
        assert info.value.code in ("invalid_audio", "no_audio_stream")
        with pytest.raises(AudioError) as info:
            fn(io.BytesIO(path.read_bytes()))
        assert info.value.code == "invalid_audio"


def test_missing_file_is_audio_error(tmp_path):
    with pytest.raises(AudioError):
        audio.decode(str(tmp_path / "nope.wav"))
    with pytest.raises(AudioError):
        audio.probe_duration(str(tmp_path / "nope.wav"))


def test_max_seconds(sentence, tmp_path):
    path, _, _, duration = sentence
    with pytest.raises(AudioError) as info:
        audio.decode(str(path), max_seconds=1.0)
    assert info.value.code == "audio_too_long"
    assert abs(audio.decode(str(path), max_seconds=duration).size / SR - duration) <= 0.1
    # A long file stops early, also from a file object.
    long = tmp_path / "long.wav"
    subprocess.run(["sox", "-n", "-r", "22050", "-c", "1", "-b", "16", str(long), "synth", "120", "sine", "300"],
                   check=True)
    with pytest.raises(AudioError) as info:
        audio.decode(io.BytesIO(long.read_bytes()), max_seconds=10)
    assert info.value.code == "audio_too_long"


def test_corrupt_files_raise_only_audio_error(encoded):
    """Truncated and byte-damaged files either decode or raise AudioError, nothing else."""
    path, _ = encoded
    data = path.read_bytes()
    rng = np.random.default_rng(3)
    variants = [data[: int(len(data) * f)] for f in (0.02, 0.1, 0.5, 0.9)]
    for hits in (1, 40, 1000):
        damaged = bytearray(data)
        for i in rng.integers(0, len(damaged), hits):
            damaged[i] = int(rng.integers(0, 256))
        variants.append(bytes(damaged))
    for variant in variants:
        for fn in (audio.probe_duration, audio.decode):
            try:
                result = fn(io.BytesIO(variant))
            except AudioError as exc:
                assert exc.code in ("invalid_audio", "no_audio_stream")
            else:
                if fn is audio.decode:
                    assert result.dtype == np.float32 and result.ndim == 1


# --- chunk plan: properties ------------------------------------------------------------------

def check_plan(chunks: list[Chunk], regions: list[tuple[int, int]], n: int) -> None:
    """Everything plan_chunks promises, for any input."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert type(c.start) is int and type(c.end) is int  # real sample positions
        assert 0 <= c.start < c.end <= n
        assert c.offset_seconds == c.start / SR and c.duration_seconds == (c.end - c.start) / SR
    for a, b in zip(chunks, chunks[1:]):  # ordered, non-overlapping
        assert a.end <= b.start
    if not regions:
        assert chunks == []
        return
    # Every speech region lies wholly inside exactly one chunk.
    owner = []
    for s, e in regions:
        inside = [c.index for c in chunks if c.start <= s and e <= c.end]
        assert len(inside) == 1, (s, e, inside)
        overlapping = [c.index for c in chunks if s < c.end and c.start < e]
        assert overlapping == inside
        owner.append(inside[0])
    # Every cut lies in silence: not strictly inside any speech region.
    for c in chunks:
        for cut in (c.start, c.end):
            assert not any(s < cut < e for s, e in regions), cut
    # Complete coverage, and no chunk without speech.
    covered = sum(min(e, c.end) - max(s, c.start) for c in chunks for s, e in regions
                  if s < c.end and c.start < e)
    assert covered == sum(e - s for s, e in regions)
    assert sorted(set(owner)) == list(range(len(chunks)))
    # Cuts keep at most 0.5 s of silence next to speech; leading/trailing silence is dropped.
    for c in chunks:
        mine = [r for r, i in zip(regions, owner) if i == c.index]
        assert mine[0][0] - SR // 2 <= c.start and c.end <= mine[-1][1] + SR // 2
    assert chunks[0].start == regions[0][0] and chunks[-1].end == regions[-1][1]
    # At most 30 s, except a merged tail: the last chunk, at most MAX_MERGED_SECONDS long.
    for c in chunks:
        if c.end - c.start > MAX_CHUNK_SECONDS * SR:
            assert c.index == len(chunks) - 1
            assert c.end - c.start <= MAX_MERGED_SECONDS * SR
            mine = [r for r, i in zip(regions, owner) if i == c.index]
            assert mine[-1][1] - mine[0][0] > audio.MAX_SPEECH_SPAN_SECONDS * SR  # it was two groups
    # A short tail survives only when merging would make too long a chunk.
    if len(chunks) > 1:
        last = [r for r, i in zip(regions, owner) if i == len(chunks) - 1]
        before = [r for r, i in zip(regions, owner) if i == len(chunks) - 2]
        if sum(e - s for s, e in last) < MIN_TAIL_SECONDS * SR:
            assert last[-1][1] - before[0][0] > MAX_MERGED_SECONDS * SR


def sec(*pairs: tuple[float, float]) -> list[tuple[int, int]]:
    return [(round(s * SR), round(e * SR)) for s, e in pairs]


# (id, regions in seconds, recording length in seconds, expected chunks in seconds)
HAND_MADE = [
    ("long-silence-between-groups", [(2, 10), (12, 20), (40, 50), (51, 58)], 60, [(2, 20.5), (39.5, 58)]),
    ("cut-in-middle-of-short-pause", [(0, 10), (10.4, 25), (25.2, 28.8), (29.2, 40), (41, 55)], 56,
     [(0, 29.0), (29.0, 55)]),
    ("adjacent-regions-cut-at-boundary", [(0, 28), (28, 40)], 40, [(0, 28), (28, 40)]),
    # Balanced: as many chunks as greedy packing needs, the span limit as small as it can be.
    ("short-tail-balanced-away", [(1, 15), (16, 29), (31, 33)], 35, [(1, 15.5), (15.5, 33)]),
    ("short-tail-too-far-to-merge", [(0, 14), (15, 28), (45, 48)], 50, [(0, 28.5), (44.5, 48)]),
    ("two-chunks-balanced", [(0, 20), (21, 28), (30, 37)], 40, [(0, 20.5), (20.5, 37)]),
    ("tail-merged-into-middle-chunk", [(0, 10), (10.5, 28), (29, 40), (41, 57), (58, 60)], 62,
     [(0, 28.5), (29, 60)]),
    ("one-region", [(3, 4)], 10, [(3, 4)]),
    ("speech-to-both-ends", [(0, 5), (6, 10)], 10, [(0, 10)]),
]


@pytest.mark.parametrize("regions,length,expected", [h[1:] for h in HAND_MADE], ids=[h[0] for h in HAND_MADE])
def test_plan_hand_made_regions(regions, length, expected):
    samples = np.zeros(length * SR, np.float32)
    regions = sec(*regions)
    chunks = audio.plan_chunks(samples, regions)
    assert [(c.start, c.end) for c in chunks] == sec(*expected)
    check_plan(chunks, regions, samples.size)
    assert audio.plan_chunks(samples, regions) == chunks


def test_plan_random_regions_properties():
    rng = np.random.default_rng(11)
    for _ in range(400):
        regions, t = [], float(rng.uniform(0, 3))
        for _ in range(int(rng.integers(1, 25))):
            gap = 0.0 if rng.random() < 0.2 else float(rng.choice([rng.uniform(0.01, 0.5), rng.uniform(0.5, 20)]))
            length = float(rng.choice([rng.uniform(0.2, 3), rng.uniform(3, 28)]))
            t += gap
            regions.append((round(t * SR), round((t + length) * SR)))
            t += length
        n = regions[-1][1] + int(rng.integers(0, 5 * SR))
        samples = np.zeros(n, np.float32)
        chunks = audio.plan_chunks(samples, regions)
        check_plan(chunks, regions, n)


def test_plan_no_regions():
    assert audio.plan_chunks(np.zeros(5 * SR, np.float32), []) == []


# (id, regions in seconds, recording length, parts, expected chunks in seconds)
PARTS = [
    # One 10.5 s utterance: one chunk for one worker, two halves for two.
    ("short-recording-split-for-two", [(0, 4.5), (5, 10.5)], 11, 2, [(0, 4.75), (4.75, 10.5)]),
    ("short-recording-whole-for-one", [(0, 4.5), (5, 10.5)], 11, 1, [(0, 10.5)]),
    # Under 2 x MIN_TAIL_SECONDS of speech: not split, each chunk would be too short.
    ("too-little-speech-to-split", [(0, 3), (3.5, 7)], 8, 2, [(0, 7)]),
    # Three chunks' worth on two workers: four, so neither worker does two while the other does one.
    ("three-become-four", [(0, 14), (15, 28), (29, 42), (43, 56), (57, 70)], 71, 2,
     [(0, 14.5), (14.5, 28.5), (28.5, 42.5), (42.5, 70)]),
    # A count that is already a multiple of the workers stays as it is.
    ("two-stay-two", [(0, 14), (15, 28), (29, 42), (43, 56)], 57, 2, [(0, 28.5), (28.5, 56)]),
]


@pytest.mark.parametrize("regions,length,parts,expected", [p[1:] for p in PARTS], ids=[p[0] for p in PARTS])
def test_plan_shares_chunks_evenly_over_workers(regions, length, parts, expected):
    samples = np.zeros(length * SR, np.float32)
    regions = sec(*regions)
    chunks = audio.plan_chunks(samples, regions, parts=parts)
    assert [(c.start, c.end) for c in chunks] == sec(*expected)
    check_plan(chunks, regions, samples.size)


def test_plan_parts_random_regions_properties():
    """With any worker count: the plan keeps every promise, never has fewer chunks than for one
    worker, and has a multiple of the workers unless a chunk would get too little speech."""
    rng = np.random.default_rng(12)
    for _ in range(300):
        regions, t = [], float(rng.uniform(0, 3))
        for _ in range(int(rng.integers(1, 25))):
            t += float(rng.uniform(0.05, 4))
            length = float(rng.choice([rng.uniform(0.2, 3), rng.uniform(3, 28)]))
            regions.append((round(t * SR), round((t + length) * SR)))
            t += length
        samples = np.zeros(regions[-1][1] + SR, np.float32)
        parts = int(rng.integers(2, 5))
        single = audio.plan_chunks(samples, regions)
        chunks = audio.plan_chunks(samples, regions, parts=parts)
        check_plan(chunks, regions, samples.size)
        assert len(chunks) >= len(single)


# --- chunk plan: real espeak-ng speech -------------------------------------------------------

MARKER = 0.4 * np.sin(2 * np.pi * np.cumsum(np.linspace(1000, 4000, 640)) / SR).astype(np.float32)  # 40 ms chirp


@pytest.fixture(scope="module")
def paragraphs(tmp_path_factory) -> list[np.ndarray]:
    tmp = tmp_path_factory.mktemp("paragraphs")
    texts = [*PARAGRAPHS[:6], "Thank you all."]
    return [audio.decode(str(speak(t, tmp / f"p{i}.wav"))) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def meeting(paragraphs) -> tuple[np.ndarray, list[int]]:
    """Six paragraphs with pauses of 0.3 to 12 s, silence at both ends, a short closing remark,
    and a chirp marker mixed into three paragraphs at known sample positions."""
    def z(seconds):
        return np.zeros(round(seconds * SR), np.float32)

    p = [x.copy() for x in paragraphs]
    layout = [z(5), p[0], z(0.3), p[1], z(0.8), p[2], z(12), p[3], z(1.5), p[4], z(0.5), p[5], z(2.5), p[6], z(6)]
    markers = []
    position = 0
    for piece in layout:
        if any(piece is p[i] for i in (1, 3, 5)):
            at = piece.size // 2 + 123  # mid-paragraph, an odd sample position
            piece[at : at + MARKER.size] = np.clip(piece[at : at + MARKER.size] + MARKER, -1, 1)
            markers.append(position + at)
        position += piece.size
    return np.concatenate(layout), markers


@pytest.fixture(scope="module")
def meeting_plan(meeting):
    samples, _ = meeting
    regions = audio.speech_regions(samples)
    return regions, audio.plan_chunks(samples, regions)


def test_meeting_plan_properties(meeting, meeting_plan):
    samples, _ = meeting
    regions, chunks = meeting_plan
    assert len(regions) >= 6 and len(chunks) >= 3
    for s, e in regions:
        assert e - s <= MAX_CHUNK_SECONDS * SR
    check_plan(chunks, regions, samples.size)
    # plan_chunks runs the VAD itself when given no regions, with the same result.
    assert audio.plan_chunks(samples) == chunks
    # Cuts fall in real silence of the audio, not merely outside the VAD's regions.
    for c in chunks:
        for cut in (c.start, c.end):
            assert np.abs(samples[max(0, cut - 80) : cut + 80]).max() < 0.01, cut / SR
    # Leading 5 s and trailing 6 s of silence are dropped; the 12 s pause is not in any chunk.
    assert chunks[0].start > 4 * SR and chunks[-1].end < samples.size - 5 * SR


def test_meeting_long_pause_not_inside_a_chunk(meeting, meeting_plan, paragraphs):
    samples, _ = meeting
    _, chunks = meeting_plan
    p = paragraphs
    start = round(5 * SR) + p[0].size + round(0.3 * SR) + p[1].size + round(0.8 * SR) + p[2].size
    quiet = (start + SR, start + 11 * SR)  # the 12 s pause, minus VAD padding
    assert not np.abs(samples[quiet[0] : quiet[1]]).any()
    assert not any(c.start < quiet[1] and quiet[0] < c.end for c in chunks)


def test_meeting_markers_at_exact_offsets(meeting, meeting_plan):
    """Each marker is found in its chunk's stored audio (pcm16, as the job store keeps it) at
    exactly marker position - chunk offset."""
    samples, markers = meeting
    regions, chunks = meeting_plan
    found_chunks = set()
    for pos in markers:
        assert any(s <= pos and pos + MARKER.size <= e for s, e in regions)  # inside speech
        (c,) = [c for c in chunks if c.start <= pos < c.end]
        found_chunks.add(c.index)
        stored = audio.from_pcm16(audio.to_pcm16(samples[c.start : c.end]))
        assert stored.size == c.end - c.start
        assert np.abs(stored - samples[c.start : c.end]).max() <= 1 / 32768
        size = stored.size + MARKER.size
        corr = np.fft.irfft(np.fft.rfft(stored, size) * np.conj(np.fft.rfft(MARKER, size)), size)[: stored.size]
        at = int(np.argmax(corr))
        assert at == pos - c.start
        assert abs(c.offset_seconds + at / SR - pos / SR) < 1e-9
    assert len(found_chunks) >= 2  # offsets checked in more than one chunk, not only chunk 0


def test_meeting_plan_deterministic(meeting, meeting_plan):
    samples, _ = meeting
    regions, chunks = meeting_plan
    again = samples.copy()
    assert audio.speech_regions(again) == regions
    assert audio.plan_chunks(again) == chunks


def test_real_short_tail_is_merged(paragraphs):
    """One paragraph, a long pause, then "Thank you all.": the remark does not fit in the
    paragraph's 29 s speech span, has far less than 6 s of speech, so it joins that chunk."""
    first, remark = paragraphs[0], paragraphs[6]
    gap = round(31 * SR) - first.size - remark.size  # span of ~31 s (< MAX_MERGED_SECONDS)
    samples = np.concatenate([np.zeros(SR, np.float32), first, np.zeros(gap, np.float32), remark,
                              np.zeros(SR, np.float32)])
    regions = audio.speech_regions(samples)
    chunks = audio.plan_chunks(samples, regions)
    check_plan(chunks, regions, samples.size)
    assert len(chunks) == 1
    assert chunks[0].duration_seconds > MAX_CHUNK_SECONDS  # the merged-tail exception
    assert chunks[0].end >= samples.size - 2 * SR  # the remark is in it


def test_all_silence_has_no_chunks():
    rng = np.random.default_rng(5)
    for samples in (np.zeros(20 * SR, np.float32), (rng.standard_normal(20 * SR) * 1e-4).astype(np.float32)):
        assert audio.speech_regions(samples) == []
        assert audio.plan_chunks(samples) == []


def test_speech_without_pause_is_split(tmp_path):
    """About 40 s of words without punctuation: no pause long enough for the VAD, which must
    cut by its maximum speech duration so no chunk exceeds 30 s."""
    text = re.sub(r"[^A-Za-z ]+", " ", " ".join(PARAGRAPHS[:3]))
    samples = audio.decode(str(speak(text, tmp_path / "run_on.wav", speed=175)))
    assert samples.size > 32 * SR
    body = samples[SR // 10 : samples.size - SR // 2]  # espeak-ng ends with ~0.33 s of silence
    quiet = _envelope(body) < 0.01
    longest = max((len(m.group()) for m in re.finditer("1+", "".join("1" if q else "0" for q in quiet))), default=0)
    assert longest * 0.01 < 0.25  # the fixture really has no VAD-sized pause
    regions = audio.speech_regions(samples)
    chunks = audio.plan_chunks(samples, regions)
    assert len(regions) >= 2 and len(chunks) >= 2
    for s, e in regions:
        assert e - s <= (audio.MAX_SPEECH_SPAN_SECONDS - 1.0) * SR
    check_plan(chunks, regions, samples.size)
    assert all(c.duration_seconds <= MAX_CHUNK_SECONDS for c in chunks)


def _near(a: tuple[int, int], b: tuple[int, int], tolerance: float = 0.1) -> bool:
    return abs(a[0] - b[0]) <= tolerance * SR and abs(a[1] - b[1]) <= tolerance * SR


def test_vad_on_parts_at_once_finds_the_same_speech(meeting):
    """Long audio: the VAD runs on pieces cut at quiet points, on threads at once. It finds the
    speech one pass finds: each region's edges within 0.1 s, or two regions that met at a cut
    made one; nothing invented, and the plan keeps every promise."""
    samples, _ = meeting
    one = audio.speech_regions(samples, parts=1)
    assert samples.size > 100 * SR and len(one) >= 6
    for parts in (2, 3, 4):
        split = audio.speech_regions(samples, parts=parts)
        cuts = audio._quiet_cuts(samples, parts)
        assert len(cuts) == parts - 1 and all(c % 512 == 0 for c in cuts)
        for region in one:  # every region found in one pass is found (maybe joined with its neighbour)
            assert any(s <= region[0] + 0.1 * SR and region[1] - 0.1 * SR <= e for s, e in split), region
        for region in split:  # and nothing else: each edge is an edge of the one-pass result
            assert any(abs(region[0] - s) <= 0.1 * SR for s, _ in one), region
            assert any(abs(region[1] - e) <= 0.1 * SR for _, e in one), region
        assert sum(e - s for s, e in split) == pytest.approx(sum(e - s for s, e in one), rel=0.03)
        assert sum(any(_near(r, x) for x in one) for r in split) >= len(split) - (parts - 1)
        check_plan(audio.plan_chunks(samples, split, parts=2), split, samples.size)


def test_vad_parts_rejoin_speech_cut_in_the_middle(tmp_path):
    """Run-on speech has no pause to cut at. 20 s of it on two parts: the region the piece
    boundary cut is one region again, as in one pass. 38 s of it: joined it would pass the
    VAD's length limit, so it stays cut at the quietest point, as one pass cuts it somewhere."""
    text = re.sub(r"[^A-Za-z ]+", " ", " ".join(PARAGRAPHS[:3]))
    run_on = audio.decode(str(speak(text, tmp_path / "run_on.wav", speed=175)))
    limit = (audio.MAX_SPEECH_SPAN_SECONDS - 1.0) * SR
    short = np.concatenate([run_on[: 20 * SR], np.zeros(SR, np.float32)])
    one = audio.speech_regions(short, parts=1)
    (cut,) = audio._quiet_cuts(short, 2)
    assert len(one) == 1 and one[0][0] < cut - 5 * SR and cut + 5 * SR < one[0][1]  # cut inside speech
    joined = audio.speech_regions(short, parts=2)
    assert len(joined) == 1 and _near(joined[0], one[0])
    for samples in (short, run_on):
        split = audio.speech_regions(samples, parts=2)
        assert all(e - s <= limit for s, e in split)
        assert sum(e - s for s, e in split) == pytest.approx(sum(e - s for s, e in audio.speech_regions(samples, parts=1)),
                                                             rel=0.05)
        check_plan(audio.plan_chunks(samples, split), split, samples.size)


# --- pcm16 -----------------------------------------------------------------------------------

def test_pcm16_round_trip():
    rng = np.random.default_rng(9)
    samples = np.concatenate([rng.uniform(-1, 1, 50_000), [-1.0, 1.0, 0.0, 1 / 32768, -1 / 32768, 0.49999]])
    samples = samples.astype(np.float32)
    data = audio.to_pcm16(samples)
    assert isinstance(data, bytes) and len(data) == 2 * samples.size
    back = audio.from_pcm16(data)
    assert back.dtype == np.float32 and back.shape == samples.shape
    assert np.abs(back - samples).max() <= 1 / 32768  # half a step, a whole one at +1.0
    assert back[-6] == -1.0 and back[-5] == 32767 / 32768 and back[-4] == 0.0
    assert back[-3] == 1 / 32768 and back[-2] == -1 / 32768  # the smallest steps survive
    # Out-of-range input is clipped, and the byte order is little-endian int16.
    clipped = audio.from_pcm16(audio.to_pcm16(np.array([1.5, -2.0], np.float32)))
    np.testing.assert_array_equal(clipped, [32767 / 32768, -1.0])
    assert audio.to_pcm16(np.array([1.0], np.float32)) == (32767).to_bytes(2, "little", signed=True)
    assert audio.to_pcm16(np.zeros(0, np.float32)) == b""


# --- language detection sees more than the first (maybe short) chunk -------------------------

async def test_language_is_detected_on_30_s_from_the_first_speech_not_one_chunk(tmp_path):
    """A two-worker engine gets an 11 s recording as two chunks; language detection still
    hears all of it (up to 30 s from the first speech), not only the first ~5 s chunk."""
    from sayit_node.engines.simulated import SimulatedEngine
    from sayit_node.jobs.records import JobOptions
    from sayit_node.jobs.service import JobService
    from sayit_node.jobs.sqlite_store import SqliteJobStore
    from sayit_node.jobs.worker import SpeedMeter

    class TwoWorkers(SimulatedEngine):
        parallel_chunks = 2
        heard: list[int] = []

        def detect_language(self, samples):
            self.heard.append(len(samples))
            return "ko", 0.9

    wav = speak(". ".join(PARAGRAPHS[0].split(". ")[:3]) + ".", tmp_path / "two.wav")  # ~12 s
    engine = TwoWorkers("base", 0.0)
    service = JobService(SqliteJobStore(tmp_path / "db" / "sayit.db"), engine, max_duration=600, data_dir=tmp_path,
                         min_free_bytes=0, default_language=None, beam_size=5, speed=SpeedMeter())
    job = await service.submit(str(wav), filename="two.wav", options=JobOptions())
    chunks = await service.store.chunks(job.id)
    assert len(chunks) == 2 and job.language == "ko"
    recording = audio.decode(str(wav)).size
    assert engine.heard == [min(recording - chunks[0].start, 30 * SR)]
    assert engine.heard[0] >= chunks[-1].end - chunks[0].start > chunks[0].end - chunks[0].start
