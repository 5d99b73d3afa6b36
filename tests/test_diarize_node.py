"""Diarization through real nodes (tiny.en from its wheel, the shipped GE2E ONNX model):
diarized_json over HTTP, speakers in every format, one node vs a 2-node cluster on a real
redis-server, and onnxruntime beside CTranslate2 on one thread pool without hanging."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from tests.conftest import wait_job
from tests.conversation import make_conversation
from tests.der import der
from tests.redis_fixture import start_redis


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("conv") / "two.wav"
    return out, make_conversation(out, 2, 30, seed=11)


@pytest.fixture(scope="module")
def three_voices(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("conv") / "three.wav"
    return out, make_conversation(out, 3, 60, seed=12)


def _segment_der(ref, segments) -> float:
    hyp = [(s["start"], s["end"], s["speaker"]) for s in segments]
    return der([(r.start, r.end, r.speaker) for r in ref], hyp).der


def test_diarized_json_over_http(node_factory, two_voices):
    path, ref = two_voices
    node = node_factory()
    from openai import OpenAI

    # The official SDK parses it as its own TranscriptionDiarized.
    sdk = OpenAI(base_url=node.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    result = sdk.audio.transcriptions.create(model="whisper-1", file=path.open("rb"), response_format="diarized_json")
    assert type(result).__name__ == "TranscriptionDiarized" and result.task == "transcribe"
    segments = [s.model_dump() for s in result.segments]
    with node.client() as client:
        assert segments and {"type", "id", "start", "end", "text", "speaker"} <= set(segments[0])
        assert segments[0]["type"] == "transcript.text.segment"
        assert {s["speaker"] for s in segments} == {"Speaker 1", "Speaker 2"}
        assert segments[0]["speaker"] == "Speaker 1"
        assert _segment_der(ref, segments) < 0.15, segments

        # /api/transcribe with diarize=true: the job says so, and every format carries speakers
        job = client.post("/api/transcribe", files={"audio": path.open("rb")},
                          data={"async": "true", "diarize": "true", "max_speakers": "4"})
        assert job.status_code == 202, job.text
        job_id = job.json()["jobId"]
        view = wait_job(client, job_id)
        assert view["status"] == "completed" and view["diarize"] is True
        verbose = client.get(f"/api/jobs/{job_id}/result", params={"format": "verbose_json"}).json()
        assert verbose["speakers"] == 2
        # the same audio gives the same labels
        assert [(s["start"], s["speaker"]) for s in verbose["segments"]] == \
            [(s["start"], s["speaker"]) for s in segments]
        srt = client.get(f"/api/jobs/{job_id}/result", params={"format": "srt"}).text
        assert "\nSpeaker 1: " in srt and "\nSpeaker 2: " in srt
        vtt = client.get(f"/api/jobs/{job_id}/result", params={"format": "vtt"}).text
        assert "\n<v Speaker 1>" in vtt and "\n<v Speaker 2>" in vtt

        # with word timestamps: words carry speakers, segments are split at speaker changes, and
        # the labelled (split) transcript is the same on every render (the node's cache)
        job = client.post("/api/transcribe", files={"audio": path.open("rb")},
                          data={"async": "true", "diarize": "true", "words": "true"})
        job_id = job.json()["jobId"]
        assert wait_job(client, job_id)["status"] == "completed"
        renders = [client.get(f"/api/jobs/{job_id}/result", params={"format": "verbose_json"}).json()
                   for _ in range(2)]
        assert renders[0] == renders[1] and renders[0]["speakers"] == 2
        words = renders[0]["words"]
        assert len(words) > 20 and {w["speaker"] for w in words} == {"Speaker 1", "Speaker 2"}
        assert "".join(s["text"] for s in renders[0]["segments"]).strip() == renders[0]["text"]

        # speakers=1 is honoured; counts without diarization are refused
        one = client.post("/v1/audio/transcriptions", files={"file": path.open("rb")},
                          data={"response_format": "diarized_json", "speakers": "1"}).json()
        assert {s["speaker"] for s in one["segments"]} == {"Speaker 1"}
        refused = client.post("/v1/audio/transcriptions", files={"file": path.open("rb")},
                              data={"response_format": "json", "speakers": "2"})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "diarize"


def _labels(client, path: Path) -> list[tuple[float, float, str]]:
    response = client.post("/v1/audio/transcriptions", files={"file": path.open("rb")},
                           data={"response_format": "diarized_json"})
    assert response.status_code == 200, response.text
    return [(s["start"], s["end"], s["speaker"]) for s in response.json()["segments"]]


def _chunks_run(node) -> float:
    import re

    text = node.client().get("/metrics").text
    match = re.search(r"^sayit_chunks_total (\S+)", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_two_node_cluster_labels_like_one_node(node_factory, three_voices, tmp_path):
    path, ref = three_voices
    single = node_factory(env={"MAX_CONCURRENT_CHUNKS": "1"})
    with single.client() as client:
        alone = _labels(client, path)
    single.stop()
    # Accuracy is bench/diarization.py's job; here: several speakers, and the same labels below.
    assert len({s for *_, s in alone}) >= 2

    redis = start_redis(tmp_path / "redis")
    try:
        env = {"REDIS_URL": redis.url, "MAX_CONCURRENT_CHUNKS": "1"}
        a = node_factory(env={**env, "WORKER_ID": "alpha"})
        b = node_factory(env={**env, "WORKER_ID": "beta"})
        with a.client() as ca:
            clustered = _labels(ca, path)
        workers = {n.env["WORKER_ID"]: _chunks_run(n) for n in (a, b)}
        assert all(workers.values()), f"both nodes ran chunks: {workers}"
        assert clustered == alone
        # and the other node renders the same labels from the shared store
        with b.client() as cb:
            jobs = cb.get("/api/jobs").json()["jobs"]
            verbose = cb.get(f"/api/jobs/{jobs[0]['jobId']}/result", params={"format": "verbose_json"}).json()
            assert [(s["start"], s["end"], s["speaker"]) for s in verbose["segments"]] == clustered
    finally:
        redis.stop()


def test_onnxruntime_and_ctranslate2_share_the_engine_pool_without_hanging(two_voices):
    """The previous attempt hung now and then with both libraries' thread pools in one process."""
    import numpy as np

    from sayit_node.audio import decode, speech_regions
    from sayit_node.diarize.embedder import SpeakerEmbedder
    from sayit_node.diarize.models import BUNDLED
    from sayit_node.engines.base import TranscribeOptions
    from sayit_node.engines.faster_whisper import FasterWhisperEngine
    from tests.test_mlx_engine import bundled_tiny_en

    path, _ = two_voices
    samples = decode(str(path))[: 16000 * 12]
    engine = FasterWhisperEngine(str(bundled_tiny_en()), "tiny.en", cores=2, parallel_chunks=2)
    embedder = SpeakerEmbedder(BUNDLED["ge2e"])
    regions = speech_regions(samples)
    pool = ThreadPoolExecutor(3, thread_name_prefix="sayit-engine")
    done = threading.Event()
    try:
        futures = []
        for _ in range(3):
            futures.append(pool.submit(engine.transcribe, samples, TranscribeOptions(language="en", beam_size=1)))
            futures += [pool.submit(embedder.embed_chunk, samples, regions) for _ in range(2)]
        finished, pending = wait(futures, timeout=240)
        assert not pending, f"{len(pending)} of {len(futures)} calls never finished (hang)"
        results = [f.result() for f in futures]
        windows = [r for r in results if hasattr(r, "embeddings")]
        assert all(np.array_equal(w.embeddings, windows[0].embeddings) for w in windows)
        done.set()
    finally:
        pool.shutdown(wait=done.is_set(), cancel_futures=True)


def test_cli_transcribe_diarize_in_process(two_voices, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    path, _ = two_voices
    result = subprocess.run(
        [sys.executable, "-m", "sayit_node", "transcribe", str(path), "--format", "srt", "--diarize"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SAYIT_CONFIG_FILE": str(tmp_path / "none.toml"),
             "SAYIT_LOG_DIR": str(tmp_path / "logs"), "WHISPER_CACHE_DIR": str(tmp_path / "models"),
             "SAYIT_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    assert "\nSpeaker 1: " in result.stdout and "\nSpeaker 2: " in result.stdout, result.stdout
