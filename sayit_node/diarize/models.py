"""Find the speaker-embedding model: the one shipped with SayIt, a file, or a hub download.

`SAYIT_SPEAKER_MODEL`:
- `ge2e` (default): `ge2e.onnx` inside this package — Resemblyzer's GE2E speaker encoder
  (weights from the `resemblyzer` 0.1.4 wheel on PyPI, Apache-2.0), converted once to ONNX by
  `scripts/convert-speaker-model`; 5.7 MB, no download, works offline.
- a path to an `.onnx` file (or a directory holding `model.onnx`);
- a hub repository id `owner/name` whose `*.onnx` file takes the same input (`mels`:
  batch x 160 x 40 mel power frames) and returns one embedding per row. It is downloaded once
  (with progress in the log, like Whisper models) into `<WHISPER_CACHE_DIR>/speaker--owner--name`
  and read from there afterwards.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..engines.base import ModelNotAvailable
from ..engines.models import _REPO_ID, download_snapshot

BUNDLED = {"ge2e": Path(__file__).with_name("ge2e.onnx")}
BUNDLED_SHA256 = {"ge2e": "1e4983d1f247944ee65b0a2f8bd73b11cc7b06eccebd0c0acc6df2c7ab716d11"}
HUB_FILES = ["*.onnx", "config.json", "LICENSE*", "README.md"]


def _onnx_in(directory: Path) -> Path | None:
    if (directory / "model.onnx").is_file():
        return directory / "model.onnx"
    found = sorted(directory.glob("*.onnx"))
    return found[0] if found else None


def _bundled(name: str) -> Path:
    path = BUNDLED[name]
    if not path.is_file():
        raise ModelNotAvailable(f"the bundled speaker model {path} is missing; reinstall SayIt")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != BUNDLED_SHA256[name]:
        raise ModelNotAvailable(f"the bundled speaker model {path} is corrupt (sha256 {digest}); reinstall SayIt")
    return path


def _download(repo: str, cache_dir: Path) -> Path:
    from huggingface_hub import constants

    key = "speaker--" + repo.replace("/", "--")
    target = cache_dir / key
    found = _onnx_in(target) if target.is_dir() else None
    if found:
        return found
    if constants.is_offline_mode():
        raise ModelNotAvailable(f"speaker model {repo} is not downloaded and downloads are disabled "
                                f"(HF_HUB_OFFLINE is set); put its .onnx file in {target} or use the bundled 'ge2e'")
    target = download_snapshot(
        repo, cache_dir, key, what=f"speaker model {repo}", files=HUB_FILES,
        complete=lambda d: d.is_dir() and _onnx_in(d) is not None,
        problem=lambda names: None if any(n.endswith(".onnx") and "/" not in n for n in names)
        else f"hub repository {repo} has no .onnx file; a speaker model must be ONNX",
        unavailable=lambda reason: ModelNotAvailable(
            f"speaker model {repo} could not be downloaded: {reason}; "
            "use the bundled 'ge2e' or put the .onnx file on disk"),
    )
    return _onnx_in(target)


def resolve_speaker_model(name_or_path: str, cache_dir: Path) -> Path:
    """The .onnx file for `name_or_path` (see the module doc)."""
    given = str(name_or_path or "ge2e").strip()
    if given in BUNDLED:
        return _bundled(given)
    path = Path(given).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = _onnx_in(path)
        if found is None:
            raise ModelNotAvailable(f"speaker model directory '{given}' holds no .onnx file")
        return found
    if _REPO_ID.match(given) and not given.startswith((".", "/", "~")):
        return _download(given, Path(cache_dir).expanduser())
    raise ModelNotAvailable(f"speaker model '{given}' is neither 'ge2e', an .onnx file, a directory with one, "
                            "nor a hub repository id (owner/name)")
