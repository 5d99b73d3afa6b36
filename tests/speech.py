"""Real speech for tests and benchmarks: espeak-ng reads texts we wrote; WER scores the result.

The texts are the references. Keep them plain English prose (espeak-ng's Korean is not
recognisable speech for Whisper, so Korean quality is never judged with it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

# bench/corpus.py speaks the first nine too (some cut short): change them and bump its VERSION.
PARAGRAPHS = [
    "Good morning everyone, and thank you for joining the weekly planning meeting. "
    "Today we have three topics on the agenda. First we will review the numbers from last month. "
    "Then we will talk about the new office. Finally we will decide who travels to the conference in May.",
    "Sales grew by twelve percent compared with the same month last year. "
    "Most of the growth came from small customers who signed up through the website. "
    "The team believes that the new pricing page made the difference, because it is much easier to read.",
    "The new office is close to the train station, which will make the morning commute shorter for most of us. "
    "It has two meeting rooms, a small kitchen and enough desks for twenty people. "
    "We expect to move in at the start of next quarter, if the builders finish on time.",
    "Several people asked about parking. There is a public garage across the street, "
    "and the company will pay for a monthly pass for anyone who needs one. "
    "Bicycles can be stored in the basement, where there is also a shower.",
    "Now let us talk about the conference. It takes place in the second week of May, "
    "and it is the most important event of the year for our industry. "
    "We would like to send two people who can present our work and meet potential partners.",
    "Anna has offered to give the main talk, since she led the project from the beginning. "
    "Tom will join her and run the booth, where visitors can try the product themselves. "
    "If anyone else would like to go, please send me a short note before Friday.",
    "Before we finish, a reminder about the customer survey. "
    "We received more than four hundred answers, which is twice as many as last time. "
    "People like the product, but they want better documentation and faster support on weekends.",
    "The support team will hire two more people this summer to cover Saturday and Sunday. "
    "The documentation will be rewritten by the engineers who built each feature, "
    "with examples that customers can copy and run on their own machines.",
    "Our engineers also want to improve the speed of the search page. "
    "At the moment it takes about two seconds to show results, which is too slow. "
    "The goal is to bring that down to half a second before the end of the year.",
    "Finally, I want to thank everyone for their hard work during a busy month. "
    "We shipped three new features, fixed more than fifty bugs, and welcomed four new colleagues. "
    "Please enjoy the rest of your week, and see you all at the next meeting.",
    "Let me add one more thing about holidays. The office will be closed between Christmas and New Year. "
    "If you need access to the building during that time, ask the front desk for a temporary key card.",
    "The weather has been very changeable this spring, so bring an umbrella when you visit the new office. "
    "The walk from the station takes about five minutes, and there is a nice bakery on the corner.",
]


def text_of(paragraphs: list[str]) -> str:
    return " ".join(paragraphs)


def normalise(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return text.split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate in percent (lowercase, punctuation stripped)."""
    import jiwer

    ref = " ".join(normalise(reference))
    hyp = " ".join(normalise(hypothesis))
    if not hyp:
        return 100.0
    return 100.0 * jiwer.wer(ref, hyp)


def speak(text: str, out: Path, *, speed: int = 165, voice: str = "en-us", gap_ms: int = 0) -> Path:
    """Render `text` with espeak-ng to a 16-bit wav at `out`."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (./scripts/test installs it)")
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out)]
    if gap_ms:
        cmd += ["-g", str(max(1, gap_ms // 10))]
    subprocess.run([*cmd, text], check=True, capture_output=True)
    return out


def speak_paragraphs(paragraphs: list[str], out: Path, *, pause_s: float = 0.8, speed: int = 165) -> Path:
    """One wav of all paragraphs with a pause between them (sox joins the pieces)."""
    parts = []
    for i, paragraph in enumerate(paragraphs):
        parts.append(speak(paragraph, out.with_name(f"{out.stem}.part{i}.wav"), speed=speed))
    silence = out.with_name(f"{out.stem}.silence.wav")
    subprocess.run(["sox", "-n", "-r", "22050", "-c", "1", "-b", "16", str(silence), "trim", "0", str(pause_s)],
                   check=True)
    joined = []
    for part in parts:
        joined += [str(part), str(silence)]
    subprocess.run(["sox", *joined[:-1], str(out)], check=True)
    for part in [*parts, silence]:
        part.unlink()
    return out


def duration_of(path: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True).stdout)


def long_speech(out: Path, minutes: float, *, base: Path | None = None) -> tuple[Path, str]:
    """At least `minutes` of speech: all paragraphs, repeated as often as needed.

    Returns (wav, reference text). `base` may be a wav of all paragraphs made earlier.
    """
    if base is None:
        base = speak_paragraphs(PARAGRAPHS, out.with_name(out.stem + ".base.wav"))
    repeats = max(1, int(-(-minutes * 60 // duration_of(base))))
    if repeats == 1:
        shutil.copy(base, out)
    else:
        silence = out.with_name(out.stem + ".gap.wav")
        subprocess.run(["sox", "-n", "-r", "22050", "-c", "1", "-b", "16", str(silence), "trim", "0", "1.0"],
                       check=True)
        pieces = []
        for _ in range(repeats):
            pieces += [str(base), str(silence)]
        subprocess.run(["sox", *pieces[:-1], str(out)], check=True)
        silence.unlink()
    return out, " ".join([text_of(PARAGRAPHS)] * repeats)
