"""Stitching chunk results and rendering every response format, against golden files.

The transcript is built the way the pipeline builds it: engine Segments (chunk-relative times)
stored as dicts on ChunkRecords, stitched by chunk offset. The goldens under tests/golden/ are
the exact bytes each format renders; regenerate them after an intended format change with

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_transcript_formats.py

and review the diff. SRT/VTT are also compared with a small re-statement of openai-whisper's
writers (whisper/utils.py: format_timestamp, WriteSRT, WriteVTT), so the goldens can't drift
from those conventions unnoticed.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
from pathlib import Path

import pytest

from sayit_node.engines.base import SAMPLE_RATE, Segment, Word
from sayit_node.jobs.records import CHUNK_DONE, CHUNK_FAILED, CHUNK_QUEUED, CHUNK_RUNNING, ChunkRecord
from sayit_node.jobs.transcript import (
    FORMATS,
    MEDIA_TYPES,
    Transcript,
    format_timestamp,
    normalise_format,
    render,
    stitch,
    to_srt,
    to_verbose_json,
    to_vtt,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN", "") not in ("", "0")

# Chunk 1 starts 59:58.750 into the recording (a real sample offset), so its segments cross
# the one-hour mark.
CHUNK1_START = 3598.75
CHUNK1_SAMPLE = int(CHUNK1_START * SAMPLE_RATE)  # 57_580_000


def seg(start, end, text, *, tokens=(), words=None, temperature=0.0, avg_logprob=-0.25,
        compression_ratio=1.5, no_speech_prob=0.01) -> dict:
    """A segment as an engine returns it and the store keeps it (Segment.to_dict)."""
    return Segment(
        start=start, end=end, text=text, tokens=list(tokens), temperature=temperature,
        avg_logprob=avg_logprob, compression_ratio=compression_ratio, no_speech_prob=no_speech_prob,
        words=None if words is None else [Word(s, e, w, p) for s, e, w, p in words],
    ).to_dict()


def chunk_records() -> list[ChunkRecord]:
    c0 = ChunkRecord("job_golden", 0, 0, 29 * SAMPLE_RATE, status=CHUNK_DONE, segments=[
        seg(0.0, 2.5, " Hello and welcome.", tokens=[50364, 2425, 293, 2928, 13],
            words=[(0.0, 0.4, " Hello", 0.9), (0.4, 0.8, " and", 0.95), (0.8, 2.5, " welcome.", 0.88)]),
        # 4.12345 s renders as 4.123.
        seg(2.5, 4.12345, " The arrow --> points right.", tokens=[440, 11610], avg_logprob=-0.123456,
            words=[(2.5, 2.7, " The", 0.9), (2.7, 3.0, " arrow", 0.8), (3.0, 3.1, " -->", 0.5),
                   (3.1, 3.6, " points", 0.7), (3.6, 4.12345, " right.", 0.6)]),
        seg(27.0, 30.0, " Whisper rounded this end up to 30 s.", tokens=[1], temperature=0.2,
            words=[(27.0, 28.0, " Whisper", 0.9), (28.0, 29.0, " rounded...", 0.9)]),
    ])
    c1 = ChunkRecord("job_golden", 1, CHUNK1_SAMPLE, CHUNK1_SAMPLE + 25 * SAMPLE_RATE, status=CHUNK_DONE, segments=[
        seg(0.5, 1.25, " Almost an hour in.", tokens=[7], words=[(0.5, 1.25, " Almost", 0.7)]),
        # Ends at 3601.7505 s: 3601750.5 ms, which Python's round() (as in openai-whisper) takes
        # to the even 3601750, so it renders as 01:00:01.750.
        seg(1.25, 3.0005, " Past the hour.", tokens=[8, 9], no_speech_prob=0.5),
    ])
    c2 = ChunkRecord("job_golden", 2, c1.end + 8000, c1.end + 8000 + 20 * SAMPLE_RATE, status=CHUNK_RUNNING)
    c3 = ChunkRecord("job_golden", 3, c2.end, c2.end + 10 * SAMPLE_RATE, status=CHUNK_DONE, segments=[
        seg(0.0, 1.0, " After the gap.", tokens=[10], words=[(0.0, 1.0, " After", 0.9)]),
    ])
    c4 = ChunkRecord("job_golden", 4, c3.end, c3.end + 5 * SAMPLE_RATE, status=CHUNK_FAILED, segments=None)
    c5 = ChunkRecord("job_golden", 5, c4.end, c4.end + 5 * SAMPLE_RATE, status=CHUNK_QUEUED)
    records = [c0, c1, c2, c3, c4, c5]
    random.Random(4).shuffle(records)  # stitch orders by index, not by arrival
    return records


def full() -> Transcript:
    return stitch(chunk_records(), language="en", duration=3650.123456)


def partial() -> Transcript:
    return stitch(chunk_records(), language="en", duration=3650.123456, prefix_only=True)


RENDERINGS = {
    "transcript.srt": lambda: render(full(), "srt"),
    "transcript.vtt": lambda: render(full(), "vtt"),
    "transcript.txt": lambda: render(full(), "text"),
    "transcript.json": lambda: render(full(), "json"),
    "transcript.verbose.json": lambda: render(full(), "verbose_json"),
    "transcript.verbose_words.json": lambda: render(full(), "verbose_json", words=True),
    "partial.srt": lambda: render(partial(), "srt"),
    "partial.vtt": lambda: render(partial(), "vtt"),
    "partial.verbose.json": lambda: render(partial(), "verbose_json"),
}


@pytest.mark.parametrize("name", list(RENDERINGS))
def test_golden(name):
    body = RENDERINGS[name]()
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(body.encode("utf-8"))
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert body == path.read_bytes().decode("utf-8")
    if name.endswith(".json"):
        json.loads(body)


# --- stitching -------------------------------------------------------------------------------

def test_stitch_shifts_by_chunk_offset_and_skips_unfinished():
    t = full()
    assert [s.text for s in t.segments] == [
        " Hello and welcome.", " The arrow --> points right.", " Whisper rounded this end up to 30 s.",
        " Almost an hour in.", " Past the hour.", " After the gap.",
    ]
    assert t.segments[3].start == CHUNK1_START + 0.5 and t.segments[3].end == CHUNK1_START + 1.25
    assert t.segments[3].words[0].start == CHUNK1_START + 0.5  # words move with their segment
    c3_start = (CHUNK1_SAMPLE + 25 * SAMPLE_RATE + 8000 + 20 * SAMPLE_RATE) / SAMPLE_RATE
    assert t.segments[5].start == c3_start
    # A segment never spills past its chunk (30.0 in a 29 s chunk).
    assert t.segments[2].end == 29.0
    assert t.seeks == [0, 0, 0, 359875, 359875, round(c3_start * 100)]
    assert t.language == "en" and t.task == "transcribe" and t.duration == 3650.123456
    assert t.text.startswith("Hello and welcome. The arrow --> points right.")
    assert t.text.endswith("Past the hour. After the gap.")


def test_prefix_only_stops_at_first_unfinished_chunk():
    t = partial()
    assert len(t.segments) == 5 and t.segments[-1].text == " Past the hour."
    # Whatever finished later (chunk 3) is not part of the partial transcript.
    assert "After the gap" not in render(t, "srt")
    # A failed chunk stops the prefix as well.
    records = [r for r in chunk_records() if r.index != 2]
    records = [ChunkRecord(**{**r.__dict__, "status": CHUNK_FAILED, "segments": None}) if r.index == 1 else r
               for r in records]
    t = stitch(records, language="en", duration=1.0, prefix_only=True)
    assert [s.text for s in t.segments][-1] == " Whisper rounded this end up to 30 s." and len(t.segments) == 3


def test_srt_details():
    body = render(full(), "srt")
    assert body.startswith("1\n00:00:00,000 --> 00:00:02,500\nHello and welcome.\n\n2\n")
    assert "2\n00:00:02,500 --> 00:00:04,123\nThe arrow -> points right.\n\n" in body
    assert "4\n00:59:59,250 --> 01:00:00,000\nAlmost an hour in.\n\n" in body
    assert "5\n01:00:00,000 --> 01:00:01,750\nPast the hour.\n\n" in body  # round half to even
    blocks = body.split("\n\n")
    assert blocks[-1] == "" and len(blocks) == 7  # six cues, each ending in a blank line
    assert [b.split("\n")[0] for b in blocks[:-1]] == ["1", "2", "3", "4", "5", "6"]  # renumbered
    for block in blocks[:-1]:
        number, times, text = block.split("\n")
        assert re.fullmatch(r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d", times)
        assert "-->" not in text and text == text.strip()


def test_vtt_details():
    body = render(full(), "vtt")
    assert body.startswith("WEBVTT\n\n00:00.000 --> 00:02.500\nHello and welcome.\n\n")
    assert "00:02.500 --> 00:04.123\nThe arrow -> points right.\n\n" in body
    assert "59:59.250 --> 01:00:00.000\nAlmost an hour in.\n\n" in body  # hours only once > 0
    assert body.endswith("\n\n") and "\n\n\n" not in body
    for cue in body.split("\n\n")[1:-1]:
        times, text = cue.split("\n")
        assert re.fullmatch(r"(\d\d:)?\d\d:\d\d\.\d\d\d --> (\d\d:)?\d\d:\d\d\.\d\d\d", times)
        assert "-->" not in text


def test_text_and_json():
    t = full()
    assert render(t, "text") == t.text + "\n"
    assert "-->" in render(t, "text")  # plain text is not escaped
    assert json.loads(render(t, "json")) == {"text": t.text}
    assert render(Transcript(), "text") == ""
    assert render(Transcript(), "json") == '{"text": ""}'


def test_verbose_json_fields():
    body = to_verbose_json(full())
    assert list(body) == ["task", "language", "duration", "text", "segments"]
    assert body["duration"] == 3650.123
    assert [s["id"] for s in body["segments"]] == list(range(6))
    assert [s["seek"] for s in body["segments"]][3] == 359875
    second = body["segments"][1]
    assert second == {
        "id": 1, "seek": 0, "start": 2.5, "end": 4.123, "text": " The arrow --> points right.",
        "tokens": [440, 11610], "temperature": 0.0, "avg_logprob": -0.123456, "compression_ratio": 1.5,
        "no_speech_prob": 0.01,
    }
    with_words = to_verbose_json(full(), words=True)
    words = with_words["words"]
    assert words[0] == {"word": "Hello", "start": 0.0, "end": 0.4}
    assert {"word": "Almost", "start": 3599.25, "end": 3600.0} in words
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    assert "words" not in body


def test_empty_transcript_formats():
    empty = Transcript(language="en", duration=0.0)
    assert to_srt(empty) == ""
    assert to_vtt(empty) == "WEBVTT\n\n"
    assert json.loads(render(empty, "verbose_json"))["segments"] == []


# --- openai-whisper conventions --------------------------------------------------------------

def whisper_timestamp(seconds: float, always_include_hours: bool = False, decimal_marker: str = ".") -> str:
    """openai-whisper's format_timestamp, restated: round(seconds * 1000), hours optional."""
    ms = round(seconds * 1000.0)
    hours, ms = ms // 3_600_000, ms % 3_600_000
    minutes, ms = ms // 60_000, ms % 60_000
    secs, ms = ms // 1_000, ms % 1_000
    hours_marker = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_marker}{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def whisper_srt(segments: list[dict]) -> str:
    out = io.StringIO()
    for i, s in enumerate(segments, start=1):
        print(f"{i}\n{whisper_timestamp(s['start'], True, ',')} --> {whisper_timestamp(s['end'], True, ',')}\n"
              f"{s['text'].strip().replace('-->', '->')}\n", file=out)
    return out.getvalue()


def whisper_vtt(segments: list[dict]) -> str:
    out = io.StringIO()
    print("WEBVTT\n", file=out)
    for s in segments:
        print(f"{whisper_timestamp(s['start'])} --> {whisper_timestamp(s['end'])}\n"
              f"{s['text'].strip().replace('-->', '->')}\n", file=out)
    return out.getvalue()


@pytest.mark.parametrize("make", [full, partial, Transcript], ids=["full", "partial", "empty"])
def test_matches_openai_whisper_writers(make):
    t = make()
    segments = [{"start": s.start, "end": s.end, "text": s.text} for s in t.segments]
    assert to_srt(t) == whisper_srt(segments)
    assert to_vtt(t) == whisper_vtt(segments)


@pytest.mark.parametrize("seconds,hours,marker,expected", [
    (0.0, False, ".", "00:00.000"),
    (2.5, False, ".", "00:02.500"),
    (1.5, True, ",", "00:00:01,500"),
    (1.0005, False, ".", "00:01.000"),  # 1.0005 * 1000 == 1000.5: round() goes to even
    (1.0015, False, ".", "00:01.002"),  # 1001.5 -> 1002
    (1.0006, False, ".", "00:01.001"),
    (59.9996, False, ".", "01:00.000"),  # carries into the minutes
    (3599.9995, False, ".", "01:00:00.000"),  # 3599999.5 -> 3600000: carries into the hours
    (3600.0, False, ".", "01:00:00.000"),
    (3600.0, True, ",", "01:00:00,000"),
    (3599.25, False, ".", "59:59.250"),
    (36000 + 61.5, False, ".", "10:01:01.500"),
    (-0.2, False, ".", "00:00.000"),  # clamped (openai-whisper would assert)
])
def test_format_timestamp(seconds, hours, marker, expected):
    assert format_timestamp(seconds, hours, marker) == expected
    if seconds >= 0:
        assert whisper_timestamp(seconds, hours, marker) == expected


def test_format_timestamp_rounding_rule_everywhere():
    rng = random.Random(1)
    values = [rng.uniform(0, 7200) for _ in range(2000)] + [i / 2000 for i in range(4000)]
    for v in values:
        assert format_timestamp(v) == whisper_timestamp(v)
        assert format_timestamp(v, True, ",") == whisper_timestamp(v, True, ",")


# --- format names ----------------------------------------------------------------------------

def test_normalise_format():
    assert normalise_format(None) == "json"
    assert normalise_format("") == "json"
    assert normalise_format(None, default="text") == "text"
    assert normalise_format(" SRT ") == "srt"
    assert normalise_format("txt") == "text"
    assert normalise_format("verbose_json") == "verbose_json"
    assert normalise_format("VTT") == "vtt"
    assert normalise_format("docx") is None
    assert set(MEDIA_TYPES) == set(FORMATS)
    for fmt in FORMATS:
        assert isinstance(render(full(), fmt), str)
    with pytest.raises(ValueError):
        render(full(), "docx")
