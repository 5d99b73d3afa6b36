"""Diarization parts without a node: the DER scorer, clustering, labelling, the formats, the
speaker model (shipped ONNX, a file, a hub download from a stand-in hub), and the real
embedder on espeak-ng voices."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sayit_node.diarize import Windows, diarize, pack_windows, split_result
from sayit_node.diarize.cluster import Turn, cluster, label_span, silhouette
from sayit_node.diarize.features import mel_filters, mel_frames
from sayit_node.diarize.models import BUNDLED, resolve_speaker_model
from sayit_node.engines.base import ModelNotAvailable, Segment, Word
from sayit_node.jobs.records import CHUNK_DONE, ChunkRecord
from sayit_node.jobs.transcript import diarize_transcript, render, stitch
from tests.der import der
from tests.fakehub import FakeHub, FakeRepo

ROOT = Path(__file__).resolve().parents[1]


# --- the scorer -------------------------------------------------------------------------------

REF = [(0.0, 10.0, "A"), (10.5, 20.0, "B"), (21.0, 30.0, "A")]


def test_der_perfect_and_relabelled_hypotheses_score_zero():
    assert der(REF, REF).der == 0.0
    renamed = [(s, e, {"A": "spk2", "B": "spk1"}[x]) for s, e, x in REF]
    result = der(REF, renamed)
    assert result.der == 0.0 and result.mapping == {"A": "spk2", "B": "spk1"}


def test_der_counts_miss_false_alarm_and_confusion_without_collar():
    hyp = [(0.0, 8.0, "x"), (10.5, 20.0, "x"), (21.0, 32.0, "y")]
    r = der(REF, hyp, collar=0.0)
    total = 10 + 9.5 + 9
    assert r.total == pytest.approx(total, abs=0.02)
    assert r.miss == pytest.approx(2.0, abs=0.02)  # 8-10 s unlabelled
    assert r.false_alarm == pytest.approx(2.0, abs=0.02)  # 30-32 s is silence in the reference
    # x is mapped to A (8 s) rather than B (9.5 s)? Hungarian maximises total overlap:
    # x->B (9.5) + y->A (9) = 18.5 beats x->A (8) + y->? (0): A's first 8 s are confusion.
    assert r.mapping == {"A": "y", "B": "x"}
    assert r.confusion == pytest.approx(8.0, abs=0.02)
    assert r.der == pytest.approx((2 + 2 + 8) / total, abs=1e-3)


def test_der_collar_forgives_boundary_errors_on_each_side():
    late = [(0.2, 10.2, "A"), (10.7, 20.2, "B"), (21.2, 30.2, "A")]  # 0.2 s late everywhere
    assert der(REF, late, collar=0.0).der > 0.01
    assert der(REF, late, collar=0.25).der == 0.0
    # 0.25 s each side of every reference boundary is unscored: the inner side was speech
    assert der(REF, REF, collar=0.25).total == pytest.approx(28.5 - 6 * 0.25, abs=0.02)


def test_der_one_speaker_for_everything_is_confusion():
    r = der(REF, [(0.0, 30.0, "only")], collar=0.0)
    assert r.confusion == pytest.approx(9.5, abs=0.02)  # B's time
    assert r.false_alarm == pytest.approx(1.5, abs=0.02)  # the two gaps


# --- clustering -------------------------------------------------------------------------------

def _voices(k: int, per: int, spread: float = 0.8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positive, GE2E-like embeddings: k speakers around a shared direction. With the defaults,
    speaker centroids have cosine ~0.7-0.75 and windows of one speaker ~0.8, as measured on
    espeak-ng voices with the real model."""
    rng = np.random.default_rng(seed)
    common = np.abs(rng.normal(size=64))
    centres = [np.abs(common + rng.normal(size=64)) for _ in range(k)]
    rows, truth = [], []
    for _ in range(per):
        for i, c in enumerate(centres):
            rows.append(np.abs(c + rng.normal(scale=spread, size=64)))
            truth.append(i)
    return np.array(rows), np.array(truth)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(x), int(y)) for x, y in zip(a, b)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_automatic_speaker_count(k):
    x, truth = _voices(k, 30, seed=k)
    labels = cluster(x, np.full(len(x), 0.8))
    assert labels.max() + 1 == k
    assert _same_partition(labels, truth)


def test_labels_follow_first_appearance():
    x, truth = _voices(3, 10)
    labels = cluster(x[::-1].copy(), np.full(len(x), 0.8))
    assert labels[0] == 0 and set(labels[: np.argmax(labels == 1)].tolist()) == {0}


def test_speakers_min_and_max_are_honoured():
    x, _ = _voices(3, 20)
    d = np.full(len(x), 0.8)
    assert cluster(x, d, speakers=2).max() + 1 == 2
    assert cluster(x, d, speakers=5).max() + 1 == 5
    assert cluster(x, d, max_speakers=2).max() + 1 == 2
    one, _ = _voices(1, 40)
    assert cluster(one, np.full(len(one), 0.8)).max() + 1 == 1
    assert cluster(one, np.full(len(one), 0.8), min_speakers=2).max() + 1 == 2


def test_a_stray_window_is_folded_into_a_real_speaker():
    x, _ = _voices(2, 20)
    odd = np.abs(np.random.default_rng(9).normal(size=(1, 64))) * 5
    labels = cluster(np.vstack([x, odd]), np.full(len(x) + 1, 0.8))
    assert labels.max() + 1 == 2


def test_silhouette_matches_the_definition():
    d = np.array([[0, 1, 4, 5], [1, 0, 4, 4], [4, 4, 0, 2], [5, 4, 2, 0]], dtype=float)
    labels = np.array([0, 0, 1, 1])
    # point 0: a=1, b=(4+5)/2=4.5 -> 0.7778; point 1: a=1, b=4 -> .75; point 2: a=2, b=4 -> .5; point 3: a=2, b=4.5 -> .5556
    assert silhouette(d, labels) == pytest.approx((1 - 1 / 4.5 + 0.75 + 0.5 + (1 - 2 / 4.5)) / 4)


def test_label_span_majority_and_nearest():
    timeline = [Turn(0, 4, "Speaker 1"), Turn(4.5, 6, "Speaker 2"), Turn(6, 10, "Speaker 1")]
    assert label_span(3.0, 5.5, timeline) == "Speaker 1"  # 1 s vs 1 s: the lower number on a tie
    assert label_span(3.5, 6.0, timeline) == "Speaker 2"  # 1.5 s of Speaker 2, 0.5 s of Speaker 1
    assert label_span(4.1, 4.4, timeline) == "Speaker 1"  # in the gap: the nearest turn
    assert label_span(0, 1, []) is None


def test_windows_survive_the_store_round_trip():
    emb = np.random.default_rng(0).normal(size=(3, 256)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    result = [{"start": 0.0, "end": 1.0, "text": "hi"}, pack_windows(Windows([(0, 1), (1, 2), (2, 3)], emb))]
    segments, windows = split_result(json.loads(json.dumps(result)))
    assert segments == result[:1]
    assert windows.cores == [(0, 1), (1, 2), (2, 3)]
    assert np.abs(windows.embeddings - emb).max() < 1e-3  # float16
    assert split_result(result[:1]) == (result[:1], None)


# --- formats ------------------------------------------------------------------------------------

def _diarized_chunks() -> list[ChunkRecord]:
    rng = np.random.default_rng(1)
    a, b = np.abs(rng.normal(size=(2, 256))) * 3
    def emb(c, n):
        e = np.abs(c + rng.normal(scale=0.3, size=(n, 256)))
        return e / np.linalg.norm(e, axis=1, keepdims=True)
    seg = lambda s, e, t, words=None: Segment(s, e, t, words=words).to_dict()  # noqa: E731
    chunk0 = [seg(0.0, 4.0, " Hello there.", [Word(0.0, 1.0, " Hello"), Word(1.0, 4.0, " there.")]),
              seg(4.5, 8.0, " Hi, how are you?", [Word(4.5, 8.0, " Hi, how are you?")]),
              pack_windows(Windows([(0.0 + i * 0.8, 0.8 + i * 0.8) for i in range(5)] +
                                   [(4.5 + i * 0.7, 5.2 + i * 0.7) for i in range(5)],
                                   np.vstack([emb(a, 5), emb(b, 5)])))]
    chunk1 = [seg(0.0, 3.0, " Fine --> thanks.", [Word(0.0, 3.0, " Fine --> thanks.")]),
              pack_windows(Windows([(i * 0.75, (i + 1) * 0.75) for i in range(4)], emb(a, 4)))]
    return [ChunkRecord("j", 0, 0, 8 * 16000, status=CHUNK_DONE, segments=chunk0),
            ChunkRecord("j", 1, 8 * 16000, 12 * 16000, status=CHUNK_DONE, segments=chunk1)]


def test_formats_carry_speakers():
    t = stitch(_diarized_chunks(), language="en", duration=12.0)
    assert len(t.windows) == 2 and t.windows[1].cores[0] == (8.0, 8.75)  # shifted to job time
    diarize_transcript(t)
    assert t.speakers == ["Speaker 1", "Speaker 2", "Speaker 1"] and t.speaker_count == 2
    srt = render(t, "srt")
    assert "1\n00:00:00,000 --> 00:00:04,000\nSpeaker 1: Hello there.\n" in srt
    assert "Speaker 1: Fine -> thanks." in srt
    vtt = render(t, "vtt")
    assert "00:04.500 --> 00:08.000\n<v Speaker 2>Hi, how are you?\n" in vtt
    verbose = json.loads(render(t, "verbose_json", words=True))
    assert [s["speaker"] for s in verbose["segments"]] == t.speakers and verbose["speakers"] == 2
    assert [w["speaker"] for w in verbose["words"]] == ["Speaker 1", "Speaker 1", "Speaker 2", "Speaker 1"]
    body = json.loads(render(t, "diarized_json"))
    assert body["segments"][1] == {"type": "transcript.text.segment", "id": "seg_1", "start": 4.5, "end": 8.0,
                                   "text": "Hi, how are you?", "speaker": "Speaker 2"}
    assert body["text"] == t.text and body["duration"] == 12.0
    # json and text are as before
    assert json.loads(render(t, "json")) == {"text": t.text}


def _two_speaker_segment_chunks(words, text=None) -> list[ChunkRecord]:
    """One chunk: speaker A's windows over 0-4 s, speaker B's over 4.5-9 s, and one segment."""
    rng = np.random.default_rng(2)
    a, b = np.abs(rng.normal(size=(2, 256))) * 3

    def emb(c, n):
        e = np.abs(c + rng.normal(scale=0.3, size=(n, 256)))
        return e / np.linalg.norm(e, axis=1, keepdims=True)
    text = "".join(w.word for w in words) if text is None else text
    segments = [Segment(words[0].start, words[-1].end, text, tokens=[1, 2, 3], avg_logprob=-0.2,
                        words=words).to_dict(),
                pack_windows(Windows([(i * 0.8, (i + 1) * 0.8) for i in range(5)] +
                                     [(4.5 + i * 0.9, 5.4 + i * 0.9) for i in range(5)],
                                     np.vstack([emb(a, 5), emb(b, 5)])))]
    return [ChunkRecord("j", 0, 0, 10 * 16000, status=CHUNK_DONE, segments=segments)]


def test_a_segment_is_split_where_the_speaker_changes():
    words = [Word(0.0, 0.8, " Good"), Word(0.8, 1.6, " morning,"), Word(1.6, 3.9, " everyone."),
             Word(4.6, 5.4, " Hi,"), Word(5.4, 6.4, " thanks"), Word(6.4, 7.2, " for"), Word(7.2, 8.9, " coming.")]
    t = stitch(_two_speaker_segment_chunks(words), language="en", duration=10.0)
    diarize_transcript(t)
    assert [(s.start, s.end, s.text) for s in t.segments] == [
        (0.0, 3.9, " Good morning, everyone."), (4.6, 8.9, " Hi, thanks for coming.")]
    assert t.speakers == ["Speaker 1", "Speaker 2"] and t.speaker_count == 2 and t.seeks == [0, 0]
    assert t.word_speakers == [["Speaker 1"] * 3, ["Speaker 2"] * 4]
    assert t.segments[1].avg_logprob == -0.2 and t.segments[1].tokens == []
    body = json.loads(render(t, "diarized_json"))
    assert [(s["id"], s["speaker"], s["text"]) for s in body["segments"]] == [
        ("seg_0", "Speaker 1", "Good morning, everyone."), ("seg_1", "Speaker 2", "Hi, thanks for coming.")]
    assert "Speaker 2: Hi, thanks for coming." in render(t, "srt")
    assert t.text == "Good morning, everyone. Hi, thanks for coming."


def test_one_stray_word_does_not_split_a_segment():
    # "coming." is the only word in B's time: a run of one word stays with its neighbour
    words = [Word(0.0, 1.0, " We"), Word(1.0, 2.0, " will"), Word(2.0, 3.0, " be"), Word(3.0, 3.9, " there"),
             Word(4.6, 5.2, " soon.")]
    t = stitch(_two_speaker_segment_chunks(words), language="en", duration=10.0)
    diarize_transcript(t)
    assert len(t.segments) == 1 and t.segments[0].tokens == [1, 2, 3] and t.speakers == ["Speaker 1"]
    assert t.word_speakers == [["Speaker 1"] * 4 + ["Speaker 2"]]


def test_a_segment_whose_words_do_not_spell_its_text_stays_whole():
    words = [Word(0.0, 1.0, " Good"), Word(1.0, 3.9, " morning."), Word(4.6, 6.0, " Hi"), Word(6.0, 8.9, " there.")]
    t = stitch(_two_speaker_segment_chunks(words, text=" Good morning. Hi there, friend."), language="en",
               duration=10.0)
    diarize_transcript(t)
    assert len(t.segments) == 1 and t.segments[0].text == " Good morning. Hi there, friend."


def test_undiarized_transcripts_are_unchanged():
    chunks = _diarized_chunks()
    for c in chunks:
        c.segments = c.segments[:-1]
    t = stitch(chunks, language="en", duration=12.0)
    assert "speaker" not in render(t, "verbose_json") and "<v " not in render(t, "vtt")
    assert "Speaker" not in render(t, "srt")


# --- the model ----------------------------------------------------------------------------------

def test_bundled_model_resolves_and_is_checked(tmp_path, monkeypatch):
    assert resolve_speaker_model("ge2e", tmp_path) == BUNDLED["ge2e"]
    onnx = tmp_path / "m" / "model.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(BUNDLED["ge2e"].read_bytes())
    assert resolve_speaker_model(str(onnx), tmp_path) == onnx
    assert resolve_speaker_model(str(onnx.parent), tmp_path) == onnx
    with pytest.raises(ModelNotAvailable, match="neither"):
        resolve_speaker_model("./nope.onnx", tmp_path)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"x")
    monkeypatch.setitem(BUNDLED, "ge2e", broken)
    with pytest.raises(ModelNotAvailable, match="corrupt"):
        resolve_speaker_model("ge2e", tmp_path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _resolve_speaker_in_child(name: str, cache: Path, home: Path, endpoint: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HF_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({"PYTHONPATH": str(ROOT), "HF_HOME": str(home / "hf-home"), "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "HF_ENDPOINT": endpoint})
    args = json.dumps({"name": name, "cache": str(cache), "kind": "speaker"})
    proc = subprocess.run([sys.executable, "-m", "tests.fakehub.resolve_child", args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_speaker_model_downloads_from_the_hub_once_with_progress(tmp_path):
    files = {"speaker.onnx": BUNDLED["ge2e"], "README.md": Path(__file__), "weights.bin": Path(__file__)}
    with FakeHub([FakeRepo.from_files("acme/voice-embedder", files),
                  FakeRepo.from_files("acme/not-onnx", {"README.md": Path(__file__)})]) as hub:
        cache = tmp_path / "cache"
        result, stderr = _resolve_speaker_in_child("acme/voice-embedder", cache, tmp_path, hub.url)
        path = Path(result["path"])
        assert path == cache / "speaker--acme--voice-embedder" / "speaker.onnx"
        assert path.read_bytes() == BUNDLED["ge2e"].read_bytes()
        assert not (path.parent / "weights.bin").exists()
        assert (f"downloading speaker model acme/voice-embedder from {hub.url}/acme/voice-embedder (2 files, 5.7 MB)"
                in stderr), stderr
        progress = [line for line in stderr.splitlines() if "downloading speaker model acme/voice-embedder:" in line]
        assert progress and progress[-1].endswith("(100%)"), stderr
        before = len(hub.requests)
        again, _ = _resolve_speaker_in_child("acme/voice-embedder", cache, tmp_path, hub.url)
        assert again["path"] == str(path) and hub.requests[before:] == []
        assert "downloaded speaker model acme/voice-embedder" in stderr
        # A repository with no .onnx file is refused from its listing, before any file is fetched.
        before = len(hub.requests)
        wrong, _ = _resolve_speaker_in_child("acme/not-onnx", tmp_path / "c4", tmp_path, hub.url)
        assert wrong["error"] == "ModelNotAvailable" and "has no .onnx file" in wrong["message"], wrong
        assert not any("/resolve/" in p for _, p in hub.requests[before:])
        missing, _ = _resolve_speaker_in_child("acme/nothing", tmp_path / "c2", tmp_path, hub.url)
        assert missing["error"] == "ModelNotAvailable" and "acme/nothing" in missing["message"]
    unreachable, _ = _resolve_speaker_in_child("acme/x", tmp_path / "c3", tmp_path,
                                               f"http://127.0.0.1:{_closed_port()}")
    assert unreachable["error"] == "ModelNotAvailable" and "could not be reached" in unreachable["message"]


# --- features and the real embedder --------------------------------------------------------------

def test_mel_front_end_puts_a_tone_in_its_band():
    sr = 16000
    t = np.arange(sr) / sr
    mel = mel_frames(0.5 * np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    assert mel.shape == (101, 40)
    peak_band = int(np.argmax(mel[50]))
    centre = np.argmax(mel_filters()[peak_band]) * sr / 400
    assert abs(centre - 1000) <= 80


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory):
    from tests.conversation import make_conversation

    out = tmp_path_factory.mktemp("voices") / "two.wav"
    ref = make_conversation(out, 2, 40, seed=5)
    return out, ref


def test_real_embedder_tells_two_espeak_voices_apart(two_voices):
    from sayit_node.audio import decode, speech_regions
    from sayit_node.diarize.embedder import SpeakerEmbedder
    from tests.der import der as score

    path, ref = two_voices
    samples = decode(str(path))
    embedder = SpeakerEmbedder(BUNDLED["ge2e"])
    windows = embedder.embed_chunk(samples, speech_regions(samples))
    assert len(windows) > 20 and windows.embeddings.shape[1] == 256
    assert np.allclose(np.linalg.norm(windows.embeddings, axis=1), 1, atol=1e-4)
    # the same audio gives the same numbers (what makes labelling node-independent)
    again = embedder.embed_chunk(samples, speech_regions(samples))
    assert np.array_equal(again.embeddings, windows.embeddings)
    result = diarize([windows])
    assert result.speakers == 2
    hyp = [(t.start, t.end, t.speaker) for t in result.timeline]
    assert score([(r.start, r.end, r.speaker) for r in ref], hyp).der < 0.10


def test_tray_transcript_view_names_speakers():
    pytest.importorskip("PySide6")
    from sayit_desktop.transcript_window import timestamped
    from sayit_desktop.transcripts import Entry

    entry = Entry("k", "a.wav", "/a.wav", 0.0, transcript={"segments": [
        {"start": 0.0, "text": " Hello.", "speaker": "Speaker 1"}, {"start": 65.0, "text": " Hi.", "speaker": "Speaker 2"}]})
    assert timestamped(entry) == "[0:00]  Speaker 1: Hello.\n[1:05]  Speaker 2: Hi."
    entry.transcript = {"segments": [{"start": 1.0, "text": " Plain."}]}
    assert timestamped(entry) == "[0:01]  Plain."


def test_window_mels_match_per_window_features(two_voices):
    """Mel frames computed once per chunk, sliced and rescaled per window, are the features the
    encoder got from each window on its own (volume-normalised), away from the window edges."""
    from sayit_node.audio import decode
    from sayit_node.diarize.embedder import WINDOW_FRAMES, window_mels
    from sayit_node.diarize.features import HOP, normalize_volume

    samples = decode(str(two_voices[0]))[: 16000 * 20]
    win = WINDOW_FRAMES * HOP
    starts = [0, 160 * 37, 160 * 500, len(samples) - win]
    got = window_mels(samples, starts)
    for i, s in enumerate(starts):
        alone = mel_frames(normalize_volume(samples[s:s + win]))[:WINDOW_FRAMES]
        np.testing.assert_allclose(got[i, 2:-2], alone[2:-2], rtol=1e-3, atol=1e-6 * alone.max())
    # a chunk shorter than a window is padded with silence, as a lone window was
    short = samples[:8000]
    np.testing.assert_allclose(window_mels(short, [0])[0, 2:48],
                               mel_frames(normalize_volume(np.pad(short, (0, win - 8000))))[2:48], rtol=1e-3,
                               atol=1e-9)


def test_chunks_are_embedded_at_most_one_per_lane(two_voices, monkeypatch):
    import threading
    import time as _time
    from concurrent.futures import ThreadPoolExecutor

    from sayit_node.audio import decode
    from sayit_node.cpu import CpuShare
    from sayit_node.diarize.embedder import SpeakerEmbedder

    samples = decode(str(two_voices[0]))[: 16000 * 4]
    embedder = SpeakerEmbedder(BUNDLED["ge2e"], share=CpuShare(2))
    busy, peak, lock = [0], [0], threading.Lock()
    real = embedder.embed_chunk

    def counted(*args):
        with lock:
            busy[0] += 1
            peak[0] = max(peak[0], busy[0])
        _time.sleep(0.05)
        try:
            return real(*args)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(embedder, "embed_chunk", counted)
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: embedder.embed_speech(samples), range(5)))
    assert peak[0] == 2
    assert all(np.array_equal(r.embeddings, results[0].embeddings) for r in results)


def test_cpu_share_keeps_engine_and_embedding_threads_within_the_cores():
    import threading
    import time

    from sayit_node.cpu import CpuShare

    share = CpuShare(2)
    log: list[str] = []

    def hold(kind: str, release: threading.Event, entered: threading.Event, threads: int):
        with (share.engine(threads) if kind == "engine" else share.lane()):
            log.append(kind)
            entered.set()
            release.wait(5)

    def start(kind: str, threads: int = 1):
        release, entered = threading.Event(), threading.Event()
        thread = threading.Thread(target=hold, args=(kind, release, entered, threads), daemon=True)
        thread.start()
        return release, entered, thread

    def settle(busy):
        deadline = time.monotonic() + 2
        while share.busy != busy and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert share.busy == busy

    # a 2-thread engine call takes both cores: embeddings wait for it ...
    e_rel, e_in, e_thr = start("engine", 2)
    assert e_in.wait(2)
    lanes = [start("lane") for _ in range(3)]
    assert not any(entered.wait(0.2) for _, entered, _ in lanes)
    # ... and waiting embeddings keep a new engine call out, even one that would fit
    w_rel, w_in, w_thr = start("engine", 1)
    assert not w_in.wait(0.2)
    e_rel.set()
    e_thr.join(2)
    # two embeddings run (one per core), the third waits, and so does the engine
    settle((0, 2))
    assert sum(entered.is_set() for _, entered, _ in lanes) == 2 and not w_in.is_set()
    first_two = [release for release, entered, _ in lanes if entered.is_set()]
    for release in first_two:
        release.set()
    # the third embedding takes a core, and the 1-thread engine call the other: 2 threads
    settle((1, 1))
    assert w_in.is_set() and all(entered.is_set() for _, entered, _ in lanes)
    for release, _, _ in lanes:
        release.set()
    w_rel.set()
    w_thr.join(2)
    settle((0, 0))
    assert log[0] == "engine" and log.count("lane") == 3 and log[-1] == "engine"


def test_four_espeak_voices_are_counted(tmp_path):
    """Four distinct voices, count not given: single windows as clustering units found 3 here,
    pairs of windows (GROUP_WINDOWS = 2) find 4."""
    from sayit_node.audio import decode, plan_chunks
    from sayit_node.diarize.embedder import SpeakerEmbedder
    from tests.conversation import make_conversation

    path = tmp_path / "four.wav"
    ref = make_conversation(path, 4, 240, seed=5)
    samples = decode(str(path))
    embedder = SpeakerEmbedder(BUNDLED["ge2e"])
    windows = []
    for chunk in plan_chunks(samples):
        w = embedder.embed_speech(samples[chunk.start:chunk.end])
        offset = chunk.start / 16000
        windows.append(Windows([(a + offset, b + offset) for a, b in w.cores], w.embeddings))
    result = diarize(windows)
    assert result.speakers == 4
    hyp = [(t.start, t.end, t.speaker) for t in result.timeline]
    assert der([(r.start, r.end, r.speaker) for r in ref], hyp).der < 0.03
