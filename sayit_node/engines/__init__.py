"""Speech engines behind one protocol, and how a node picks and loads one."""

from __future__ import annotations

import os
import platform

from .base import (
    SAMPLE_RATE,
    Engine,
    EngineError,
    ModelNotAvailable,
    Segment,
    TranscribeOptions,
    UnsupportedLanguage,
    Word,
    check_language,
)
from .models import model_display_name, resolve_model

__all__ = [
    "SAMPLE_RATE", "Engine", "EngineError", "ModelNotAvailable", "Segment", "TranscribeOptions",
    "UnsupportedLanguage", "Word", "check_language", "choose_device", "choose_engine", "cuda_device_count",
    "load_engine",
]


def _mlx_importable() -> bool:
    try:
        import mlx_whisper  # noqa: F401
    except Exception:
        return False
    return True


def choose_engine(requested: str, *, system: str | None = None, machine: str | None = None,
                  mlx_available: bool | None = None) -> str:
    """`auto` means MLX on macOS arm64 when mlx-whisper imports, faster-whisper otherwise."""
    if requested != "auto":
        return requested
    system = system or platform.system()
    machine = machine or platform.machine()
    if system == "Darwin" and machine in ("arm64", "aarch64"):
        if mlx_available if mlx_available is not None else _mlx_importable():
            return "mlx"
    return "faster-whisper"


def cuda_device_count() -> int:
    """CUDA devices CTranslate2 can use (0 when it has no CUDA support or sees no GPU)."""
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # no CUDA runtime, broken driver: no GPU for us
        return 0


def choose_device(requested: str = "auto", compute_type: str = "auto", *,
                  cuda_devices: int | None = None) -> tuple[str, str]:
    """(device, compute type) for faster-whisper from SAYIT_DEVICE and SAYIT_COMPUTE_TYPE.

    `auto` picks CUDA when CTranslate2 sees a GPU, else the CPU. Compute type `auto` means
    float16 on CUDA (what NVIDIA GPUs run fastest) and int8 on the CPU. `cuda` without a GPU
    is an error that says so, rather than a silent fall back to a CPU 10x slower.
    """
    requested = (requested or "auto").lower()
    if requested not in ("auto", "cpu", "cuda"):
        raise EngineError(f"unknown device '{requested}': use auto, cpu or cuda")
    if requested == "cpu":
        device = "cpu"
    else:
        count = cuda_device_count() if cuda_devices is None else cuda_devices
        if requested == "cuda" and count == 0:
            raise EngineError("SAYIT_DEVICE=cuda but CTranslate2 sees no CUDA GPU (driver, CUDA 12 and cuDNN 9 "
                              "libraries needed); use SAYIT_DEVICE=auto or cpu")
        device = "cuda" if count > 0 else "cpu"
    if not compute_type or compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def load_engine(settings) -> Engine:
    """Load the engine and model the settings ask for (may download the model)."""
    engine_name = choose_engine(settings.engine)
    display = model_display_name(settings.model)
    if engine_name == "simulated":
        from .simulated import SimulatedEngine

        return SimulatedEngine(display, settings.simulated_cost)
    if engine_name == "mlx":
        from .mlx import MlxEngine, resolve_mlx_model

        return MlxEngine(str(resolve_mlx_model(settings.model, settings.whisper_cache_dir)), display)
    if engine_name != "faster-whisper":
        raise EngineError(f"unknown engine '{engine_name}'")
    from .faster_whisper import FasterWhisperEngine

    device, compute_type = choose_device(settings.device, settings.compute_type)
    model_dir = resolve_model(settings.model, settings.whisper_cache_dir)
    cores = os.cpu_count() or 1
    # Batched (the default): batches of at most batch_size chunks (capped by MAX_CONCURRENT_CHUNKS
    # when set; the node holds one batch in flight, two when standalone), shared by
    # SAYIT_BATCH_WORKERS model workers that split the cores between them; each call takes its
    # share of the waiting chunks. On 2 cores, two 1-thread workers each decoding half
    # the batch beat one 2-thread call on all of it (bench/speed.py; notes in the README).
    # batch_size 1 (or a cap of 1): MAX_CONCURRENT_CHUNKS single-chunk calls in parallel threads.
    batch = settings.batch_size
    if settings.concurrency_given:
        batch = min(batch, settings.max_concurrent_chunks)
    if batch > 1:
        workers = max(1, min(settings.batch_workers, cores, batch))
    else:
        workers = settings.max_concurrent_chunks
    return FasterWhisperEngine(
        str(model_dir),
        display,
        device=device,
        compute_type=compute_type,
        parallel_chunks=workers,
        cores=cores,
        batch_size=batch,
    )
