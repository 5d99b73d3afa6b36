"""Audio in: probe and decode any container with PyAV to 16 kHz mono float32, and plan chunks.

The chunk plan is the heart of SayIt's speed and accuracy: Silero VAD (shipped with
faster-whisper) finds speech, and chunks of at most ~30 s are cut only in the silence between
speech regions, so Whisper always sees whole sentences and chunks can run in parallel.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np

from .engines.base import SAMPLE_RATE

log = logging.getLogger(__name__)

# Whisper sees 30 s at a time: a chunk never exceeds one window (a 30.5 s chunk would cost a
# second, nearly empty window and invite invented text). Speech inside a chunk spans at most
# MAX_SPEECH_SPAN_SECONDS; the rest is silence kept around the cuts.
MAX_CHUNK_SECONDS = 30.0
MAX_SPEECH_SPAN_SECONDS = 29.0
# A last chunk with less speech than this is merged into the previous one (a 2.6 s tail
# chunk was seen to make Whisper invent text), as long as the result stays this short:
MIN_TAIL_SECONDS = 4.0
MAX_MERGED_SECONDS = 40.0


class AudioError(Exception):
    """The upload is not usable audio. `code` names the case for the API."""

    def __init__(self, message: str, code: str = "invalid_audio") -> None:
        super().__init__(message)
        self.code = code


def probe_duration(source: str | BinaryIO) -> float | None:
    """Duration in seconds from the container header, None if it doesn't say."""
    try:
        with av.open(source, mode="r") as container:
            streams = container.streams.audio
            if not streams:
                raise AudioError("the file has no audio stream", code="no_audio_stream")
            stream = streams[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
            return None
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise AudioError("the file is not a readable audio file") from exc
    finally:
        if hasattr(source, "seek"):
            source.seek(0)


def decode(source: str | BinaryIO, *, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream to 16 kHz mono float32.

    Stops with AudioError(code="audio_too_long") as soon as more than `max_seconds` were
    decoded, so a file whose header lies about its length can't exhaust memory.
    """
    pieces: list[np.ndarray] = []
    total = 0
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE) + SAMPLE_RATE

    def take(frames) -> None:
        nonlocal total
        for out in frames:
            array = out.to_ndarray().reshape(-1)
            pieces.append(array)
            total += array.size
        if limit is not None and total > limit:
            raise AudioError("the audio is longer than the limit", code="audio_too_long")

    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError("the file has no audio stream", code="no_audio_stream")
            stream = container.streams.audio[0]
            # A resampler is fixed to its first frame's format, layout and rate; a stream may
            # change them midway (e.g. MP3s of different rates joined together), so start a
            # new resampler (after draining the old one) whenever they change.
            resampler = None
            params = None
            for frame in _frames(container, stream):
                frame_params = (frame.format.name, frame.layout.name, frame.sample_rate)
                if resampler is None or frame_params != params:
                    if resampler is not None:
                        take(resampler.resample(None))
                    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
                    params = frame_params
                frame.pts = None  # let the resampler count samples itself
                take(resampler.resample(frame))
            if resampler is not None:
                take(resampler.resample(None))
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise AudioError("the file is not a readable audio file") from exc
    if not pieces:
        raise AudioError("the file contains no audio samples")
    samples = np.concatenate(pieces).astype(np.float32) / 32768.0
    if samples.size < SAMPLE_RATE // 10:
        raise AudioError("the audio is too short to transcribe (under 0.1 s)")
    return samples


def _frames(container, stream):
    """Decoded frames, skipping the odd corrupt packet in the middle of a good file."""
    errors = 0
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.InvalidDataError:
            errors += 1
            if errors > 50:
                raise


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # sample offset in the whole recording
    end: int  # exclusive

    @property
    def offset_seconds(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def duration_seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


# Silero VAD runs on one thread and is most of the wait before a long recording's first chunk
# starts (0.85 s of the 1.3 s before it for 354 s of audio here). Audio of at least this much
# per part is cut at its quietest points into parts (one per core, at most VAD_MAX_PARTS) that
# run on threads at once: 0.85 -> 0.50 s.
VAD_PART_SECONDS = 30.0
VAD_MAX_PARTS = 4
_VAD_WINDOW = 512  # Silero's window (samples): parts are cut on window boundaries
_VAD_PAD_MS = 200
_VAD_MAX_SPEECH_SECONDS = MAX_SPEECH_SPAN_SECONDS - 1.0  # a region is at most this long


def speech_regions(samples: np.ndarray, *, parts: int | None = None) -> list[tuple[int, int]]:
    """Speech as (start, end) sample ranges, each at most MAX_CHUNK_SECONDS long.

    `parts` (default: one per core, as the audio's length allows): run the VAD on that many
    pieces of the audio at once, cut at the quietest second near each even split, and join the
    regions again (a region that runs into a cut on both sides is one region).
    """
    if parts is None:
        parts = min(os.cpu_count() or 1, VAD_MAX_PARTS, int(len(samples) / SAMPLE_RATE // VAD_PART_SECONDS))
    if parts < 2:
        return _vad(samples)
    cuts = _quiet_cuts(samples, parts)
    bounds = list(zip([0, *cuts], [*cuts, len(samples)]))
    with ThreadPoolExecutor(len(bounds), thread_name_prefix="sayit-vad") as pool:
        found = list(pool.map(lambda b: _vad(samples[b[0] : b[1]]), bounds))
    regions: list[tuple[int, int]] = []
    limit = _VAD_MAX_SPEECH_SECONDS * SAMPLE_RATE
    touch = _VAD_WINDOW + _VAD_PAD_MS * SAMPLE_RATE // 1000  # a region padded up to the cut
    for (start, _), part in zip(bounds, found):
        for i, (s, e) in enumerate(part):
            s, e = s + start, e + start
            if (i == 0 and regions and s <= start + touch and regions[-1][1] >= start - touch
                    and e - regions[-1][0] <= limit):
                regions[-1] = (regions[-1][0], e)  # speech across the cut: one region again
            else:
                regions.append((s, e))
    return regions


def _quiet_cuts(samples: np.ndarray, parts: int) -> list[int]:
    """Where to cut the audio into `parts` pieces: near each even split (within a tenth of a
    part), the middle of the quietest second, on a VAD window boundary. Deterministic."""
    windows = samples[: len(samples) // _VAD_WINDOW * _VAD_WINDOW].reshape(-1, _VAD_WINDOW)
    second = SAMPLE_RATE // _VAD_WINDOW
    energy = np.convolve(np.square(windows, dtype=np.float64).mean(axis=1), np.ones(second), mode="same")
    step = len(energy) / parts
    cuts = []
    for k in range(1, parts):
        lo, hi = int(k * step - step / 10), int(k * step + step / 10)
        quietest = lo + np.flatnonzero(energy[lo:hi] == energy[lo:hi].min())
        cuts.append(int(quietest[len(quietest) // 2]) * _VAD_WINDOW)  # the middle of a silent stretch
    return cuts


def _vad(samples: np.ndarray) -> list[tuple[int, int]]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        min_silence_duration_ms=250,
        speech_pad_ms=_VAD_PAD_MS,
        max_speech_duration_s=_VAD_MAX_SPEECH_SECONDS,
    )
    return [(r["start"], r["end"]) for r in get_speech_timestamps(samples, options)]


def plan_chunks(samples: np.ndarray, regions: list[tuple[int, int]] | None = None, *,
                parts: int = 1) -> list[Chunk]:
    """Group speech regions into chunks of at most ~30 s, cutting only in silence.

    Each chunk spans from a cut point to the next; cut points are the middle of the silence
    between two speech regions. Leading and trailing silence outside all speech is dropped.
    Every speech region lies wholly inside exactly one chunk. Deterministic.

    `parts` (the engine's model workers): the chunk count is rounded up to a multiple of it
    where the pauses allow and every chunk keeps MIN_TAIL_SECONDS of speech, so each worker
    gets an even share (an 11 s recording: two chunks on two workers, not one on one; three
    chunks on two workers: four shorter ones, not a tail worker doing one while the other does
    two). Shorter chunks cost little more since the encoder sees only a chunk's length plus a
    margin, not 30 s (engines/fw_batch.py).
    """
    if regions is None:
        regions = speech_regions(samples)
    if not regions:
        return []
    max_len = int(MAX_SPEECH_SPAN_SECONDS * SAMPLE_RATE)
    groups = _group(regions, max_len)
    count = len(groups)
    if parts > 1 and len(regions) > 1:
        speech = sum(e - s for s, e in regions)
        count = max(count, min(-(-count // parts) * parts, int(speech // (MIN_TAIL_SECONDS * SAMPLE_RATE))))
    if count > 1:
        # As few chunks as that count, but balanced: the smallest span limit that still
        # gives that many groups (binary search), so no chunk is a short tail and chunks
        # decoded together in one batch are of similar length.
        lo = min(max_len, max(max(e - s for s, e in regions), (regions[-1][1] - regions[0][0]) // count))
        hi = max_len
        while lo < hi:
            mid = (lo + hi) // 2
            if len(_group(regions, mid)) <= count:
                hi = mid
            else:
                lo = mid + 1
        groups = _group(regions, lo)
        # A span limit may jump past the count (five 14 s regions: 5 groups, then 3); split
        # the widest groups in two until there are that many, each half keeping speech.
        while len(groups) < count and _split_widest(groups):
            pass
    # Merge a short tail into its neighbour.
    if len(groups) > 1:
        tail_speech = sum(e - s for s, e in groups[-1])
        merged_span = groups[-1][-1][1] - groups[-2][0][0]
        if tail_speech < MIN_TAIL_SECONDS * SAMPLE_RATE and merged_span <= MAX_MERGED_SECONDS * SAMPLE_RATE:
            groups[-2].extend(groups.pop())
    chunks: list[Chunk] = []
    n = len(samples)
    for i, group in enumerate(groups):
        start = group[0][0] if i == 0 else (groups[i - 1][-1][1] + group[0][0]) // 2
        end = group[-1][1] if i == len(groups) - 1 else (group[-1][1] + groups[i + 1][0][0]) // 2
        # Keep the cut inside the silence, at most 0.5 s from speech, the chunk within 30 s
        # (a merged tail may make one chunk longer; it then gets no extra silence).
        pad = SAMPLE_RATE // 2
        start = max(start, group[0][0] - pad, 0)
        end = min(end, group[-1][1] + pad, n)
        spare = int(MAX_CHUNK_SECONDS * SAMPLE_RATE) - (end - start)
        if spare < 0:
            start, end = max(start, group[0][0]), min(end, group[-1][1])
        chunks.append(Chunk(index=i, start=start, end=end))
    return chunks


def _split_widest(groups: list[list[tuple[int, int]]]) -> bool:
    """Split the widest group that can be split at the region boundary nearest its middle,
    both halves with MIN_TAIL_SECONDS of speech or more. False when none can."""
    def speech(group):
        return sum(e - s for s, e in group)

    for i in sorted(range(len(groups)), key=lambda i: groups[i][0][0] - groups[i][-1][1]):
        group = groups[i]
        middle = (group[0][0] + group[-1][1]) / 2
        for cut in sorted(range(1, len(group)), key=lambda k: abs(group[k][0] - middle)):
            left, right = group[:cut], group[cut:]
            if min(speech(left), speech(right)) >= MIN_TAIL_SECONDS * SAMPLE_RATE:
                groups[i : i + 1] = [left, right]
                return True
    return False


def _group(regions: list[tuple[int, int]], limit: int) -> list[list[tuple[int, int]]]:
    """Greedy: each group spans at most `limit` samples (a longer region stands alone)."""
    groups: list[list[tuple[int, int]]] = [[regions[0]]]
    for region in regions[1:]:
        if region[1] - groups[-1][0][0] <= limit:
            groups[-1].append(region)
        else:
            groups.append([region])
    return groups


def to_pcm16(samples: np.ndarray) -> bytes:
    """Compact storage form of chunk audio (what the job store keeps). On `decode`'s scale
    (int16 / 32768) and rounded, so decoded audio is stored exactly: the worker hears the
    upload's own samples. (Scaling by 32767 and truncating had moved nearly every sample one
    step towards zero.) In the samples' own float type: times 32768 is exact in float32 too."""
    return np.clip(np.rint(np.asarray(samples) * 32768.0), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
