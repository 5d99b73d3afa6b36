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
    "UnsupportedLanguage", "Word", "check_language", "choose_engine", "load_engine",
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

    model_dir = resolve_model(settings.model, settings.whisper_cache_dir)
    return FasterWhisperEngine(
        str(model_dir),
        display,
        compute_type=settings.compute_type,
        parallel_chunks=settings.max_concurrent_chunks,
        cores=os.cpu_count() or 1,
    )

