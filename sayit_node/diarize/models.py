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
import logging
import shutil
import time
from pathlib import Path

from ..engines.base import ModelNotAvailable
from ..engines.models import (_REPO_ID, _hub_failure, _hub_timeout, _locked, _make_cache_dir, _progress_class,
                              _publish, _size)

log = logging.getLogger(__name__)

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
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.utils import filter_repo_objects

    key = "speaker--" + repo.replace("/", "--")
    target = cache_dir / key
    found = _onnx_in(target) if target.is_dir() else None
    if found:
        return found
    if constants.is_offline_mode():
        raise ModelNotAvailable(f"speaker model {repo} is not downloaded and downloads are disabled "
                                f"(HF_HUB_OFFLINE is set); put its .onnx file in {target} or use the bundled 'ge2e'")
    _make_cache_dir(cache_dir)
    with _locked(cache_dir, key):
        found = _onnx_in(target) if target.is_dir() else None
        if found:
            return found
        tmp = cache_dir / f".{key}.download"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        try:
            info = HfApi().model_info(repo, timeout=_hub_timeout(), files_metadata=True)
            wanted = list(filter_repo_objects(info.siblings or [], allow_patterns=HUB_FILES, key=lambda s: s.rfilename))
            if not any(s.rfilename.endswith(".onnx") for s in wanted):
                raise ModelNotAvailable(f"hub repository {repo} has no .onnx file; a speaker model must be ONNX")
            total = sum(s.size or 0 for s in wanted) or None
            log.info("downloading speaker model %s (%d files%s) into %s", repo, len(wanted),
                     f", {_size(total)}" if total else "", target)
            snapshot_download(repo, revision=info.sha, local_dir=str(tmp), allow_patterns=HUB_FILES,
                              etag_timeout=_hub_timeout(), tqdm_class=_progress_class(repo, total))
            shutil.rmtree(tmp / ".cache", ignore_errors=True)
            if _onnx_in(tmp) is None:
                raise ModelNotAvailable(f"hub repository {repo} has no .onnx file; a speaker model must be ONNX")
            _publish(tmp, target)
        except ModelNotAvailable:
            raise
        except Exception as exc:  # the hub client raises many kinds; all mean "not available"
            raise ModelNotAvailable(f"speaker model {repo} could not be downloaded: {_hub_failure(repo, exc)}; "
                                    "use the bundled 'ge2e' or put the .onnx file on disk") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("downloaded speaker model %s in %.1f s", repo, time.monotonic() - started)
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
