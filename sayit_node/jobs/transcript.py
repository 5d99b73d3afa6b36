"""Stitch chunk results into one transcript, and render it in the response formats.

SRT and VTT follow openai-whisper's writers: millisecond rounding, SRT always shows hours and
uses a comma before the milliseconds, VTT starts with WEBVTT and uses a dot, and "-->" inside
cue text is escaped to "->".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..diarize import Windows, diarize, label_span, split_result
from ..engines.base import SAMPLE_RATE, Segment
from .records import CHUNK_DONE, ChunkRecord

FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
FORMAT_ALIASES = {"txt": "text"}
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "diarized_json": "application/json",
}


def normalise_format(name: str | None, default: str = "json") -> str | None:
    """The canonical format name, or None if unknown."""
    name = (name or default).strip().lower()
    name = FORMAT_ALIASES.get(name, name)
    return name if name in FORMATS else None


@dataclass
class Transcript:
    segments: list[Segment] = field(default_factory=list)
    seeks: list[int] = field(default_factory=list)  # per segment: its chunk's offset in 10 ms frames
    language: str | None = None
    duration: float = 0.0
    task: str = "transcribe"
    # Diarization: each chunk's speaker windows (cores in job time), then a label per segment
    # (and per word of each segment) once `diarize_transcript` ran.
    windows: list = field(default_factory=list)
    speakers: list[str | None] | None = None
    word_speakers: list[list[str | None]] | None = None
    speaker_count: int = 0

    @property
    def diarized(self) -> bool:
        return self.speakers is not None

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


def stitch(chunks: list[ChunkRecord], *, language: str | None, duration: float, task: str = "transcribe",
           prefix_only: bool = False) -> Transcript:
    """Merge done chunks in order, shifting timestamps by each chunk's real offset.

    With `prefix_only`, stop at the first chunk that is not done (the partial transcript).
    """
    out = Transcript(language=language, duration=duration, task=task)
    for chunk in sorted(chunks, key=lambda c: c.index):
        if chunk.status != CHUNK_DONE or chunk.segments is None:
            if prefix_only:
                break
            continue
        offset = chunk.start / SAMPLE_RATE
        segments, windows = split_result(chunk.segments)
        if windows is not None:
            out.windows.append(Windows([(a + offset, b + offset) for a, b in windows.cores], windows.embeddings))
        for data in segments:
            segment = Segment.from_dict(data).shifted(offset)
            # Never let a segment spill past its chunk (Whisper sometimes rounds up to 30 s).
            end = min(segment.end, chunk.end / SAMPLE_RATE)
            if end < segment.start:
                end = segment.start
            out.segments.append(_with_end(segment, end))
            out.seeks.append(int(round(offset * 100)))
    return out


# A segment is split where the speaker changes between its words, unless a speaker's run of
# words is shorter than this (one stray word is more likely a labelling slip than a turn).
MIN_TURN_WORDS = 2
MIN_TURN_SECONDS = 0.5


def diarize_transcript(t: Transcript, *, speakers: int | None = None, min_speakers: int | None = None,
                       max_speakers: int | None = None) -> Transcript:
    """Cluster the job's speaker windows once and label every segment and word (in place).

    With word timestamps, a segment whose words change speaker is split there first (see
    `split_at_speaker_changes`)."""
    result = diarize(t.windows, speakers=speakers, min_speakers=min_speakers, max_speakers=max_speakers)
    t.word_speakers = [[label_span(w.start, w.end, result.timeline) for w in (s.words or [])] for s in t.segments]
    t.speakers = [label_span(s.start, s.end, result.timeline) for s in t.segments]
    split_at_speaker_changes(t)
    t.speaker_count = len({x for x in t.speakers if x})
    return t


def split_at_speaker_changes(t: Transcript) -> None:
    """Split segments at the word where the speaker changes (in place; needs word speakers).

    Runs of one speaker's words shorter than MIN_TURN_WORDS or MIN_TURN_SECONDS join the longer
    neighbouring run. A piece starts at its first word and ends at its last (the first and last
    pieces keep the segment's own start and end), its text is its words' text, and it keeps the
    segment's decoding statistics but no tokens (Whisper's tokens are not kept per word). A
    segment whose words do not spell its text is left whole."""
    segments, seeks, speakers, word_speakers = [], [], [], []
    for seg, seek, speaker, labels in zip(t.segments, t.seeks, t.speakers, t.word_speakers):
        runs = _speaker_runs(seg.words or [], labels)
        if len(runs) < 2 or "".join(w.word for w in seg.words).strip() != seg.text.strip():
            segments.append(seg), seeks.append(seek), speakers.append(speaker), word_speakers.append(labels)
            continue
        for k, (who, lo, hi) in enumerate(runs):
            words = seg.words[lo:hi]
            segments.append(Segment(
                start=seg.start if k == 0 else words[0].start, end=seg.end if k == len(runs) - 1 else words[-1].end,
                text="".join(w.word for w in words),
                temperature=seg.temperature, avg_logprob=seg.avg_logprob, compression_ratio=seg.compression_ratio,
                no_speech_prob=seg.no_speech_prob, words=list(words)))
            seeks.append(seek), speakers.append(who), word_speakers.append(labels[lo:hi])
    t.segments, t.seeks, t.speakers, t.word_speakers = segments, seeks, speakers, word_speakers


def _speaker_runs(words: list, labels: list) -> list[tuple[str | None, int, int]]:
    """(speaker, first word, end) runs of consecutive words, short runs merged into a neighbour."""
    runs: list[list] = []
    for i, label in enumerate(labels):
        if runs and runs[-1][0] == label:
            runs[-1][2] = i + 1
        else:
            runs.append([label, i, i + 1])

    def small(r) -> bool:
        return r[2] - r[1] < MIN_TURN_WORDS or words[r[2] - 1].end - words[r[1]].start < MIN_TURN_SECONDS

    def size(r) -> float:
        return words[r[2] - 1].end - words[r[1]].start

    while len(runs) > 1:
        weak = [i for i, r in enumerate(runs) if small(r) or r[0] is None]
        if not weak:
            break
        i = min(weak, key=lambda j: (size(runs[j]), j))
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        j = max(neighbours, key=lambda n: (size(runs[n]), -n))
        lo, hi = min(runs[i][1], runs[j][1]), max(runs[i][2], runs[j][2])
        runs[min(i, j)] = [runs[j][0], lo, hi]
        del runs[max(i, j)]
        merged = [runs[0]]  # neighbours that now share a speaker become one run
        for r in runs[1:]:
            if r[0] == merged[-1][0]:
                merged[-1][2] = r[2]
            else:
                merged.append(r)
        runs = merged
    return [(r[0], r[1], r[2]) for r in runs]


def _with_end(segment: Segment, end: float) -> Segment:
    if end == segment.end:
        return segment
    return Segment(**{**segment.__dict__, "end": end})


# --- rendering -----------------------------------------------------------------------------

def format_timestamp(seconds: float, always_include_hours: bool = False, decimal_marker: str = ".") -> str:
    milliseconds = int(round(max(0.0, seconds) * 1000.0))
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1_000)
    hours_marker = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_marker}{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def _cue_text(text: str) -> str:
    return text.strip().replace("-->", "->")


def to_srt(t: Transcript) -> str:
    # Like openai-whisper's WriteSRT: every cue, the last one too, ends with a blank line.
    blocks = []
    for i, s in enumerate(t.segments, start=1):
        start = format_timestamp(s.start, True, ",")
        end = format_timestamp(s.end, True, ",")
        text = _cue_text(s.text)
        speaker = t.speakers[i - 1] if t.speakers else None
        if speaker:
            text = f"{speaker}: {text}"
        blocks.append(f"{i}\n{start} --> {end}\n{text}\n\n")
    return "".join(blocks)


def to_vtt(t: Transcript) -> str:
    # Like openai-whisper's WriteVTT: "WEBVTT", a blank line, then cues each ending with one.
    lines = ["WEBVTT\n\n"]
    for i, s in enumerate(t.segments):
        text = _cue_text(s.text)
        speaker = t.speakers[i] if t.speakers else None
        if speaker:
            text = f"<v {speaker}>{text}"
        lines.append(f"{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{text}\n\n")
    return "".join(lines)


def to_verbose_json(t: Transcript, *, words: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": t.task,
        "language": t.language,
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": [
            {
                "id": i,
                "seek": seek,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": s.tokens,
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for i, (s, seek) in enumerate(zip(t.segments, t.seeks))
        ],
    }
    if t.speakers is not None:
        for segment, speaker in zip(body["segments"], t.speakers):
            segment["speaker"] = speaker
        body["speakers"] = t.speaker_count
    if words:
        body["words"] = []
        for i, s in enumerate(t.segments):
            for j, w in enumerate(s.words or []):
                word = {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
                if t.word_speakers is not None:
                    word["speaker"] = t.word_speakers[i][j]
                body["words"].append(word)
    return body


def to_diarized_json(t: Transcript) -> dict[str, Any]:
    """OpenAI's `diarized_json`: segments with speaker, start, end, text."""
    speakers = t.speakers or [None] * len(t.segments)
    return {
        "task": t.task,
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": [
            {"type": "transcript.text.segment", "id": f"seg_{i}", "start": round(s.start, 3), "end": round(s.end, 3),
             "text": s.text.strip(), "speaker": speaker}
            for i, (s, speaker) in enumerate(zip(t.segments, speakers))
        ],
    }


def render(t: Transcript, fmt: str, *, words: bool = False) -> str:
    """The transcript as the body of a response in format `fmt` (a canonical name)."""
    if fmt == "text":
        return t.text + "\n" if t.text else ""
    if fmt == "srt":
        return to_srt(t)
    if fmt == "vtt":
        return to_vtt(t)
    if fmt == "verbose_json":
        return json.dumps(to_verbose_json(t, words=words), ensure_ascii=False)
    if fmt == "diarized_json":
        return json.dumps(to_diarized_json(t), ensure_ascii=False)
    if fmt == "json":
        return json.dumps({"text": t.text}, ensure_ascii=False)
    raise ValueError(f"unknown format {fmt}")
