"""Check tests/der.py (SayIt's DER scorer) against pyannote.metrics on random hypotheses.

pyannote.metrics is not a SayIt dependency (it brings pandas, pyannote.database, sympy, ...);
run this in a throw-away venv that has it:

    python3 -m venv /tmp/pm && /tmp/pm/bin/pip install pyannote.metrics
    /tmp/pm/bin/python bench/der_crosscheck.py

Collar: ours is md-eval's (0.25 s each side of a reference boundary); pyannote's `collar` is the
total width, so ours 0.25 == pyannote 0.5. Hypotheses here never overlap themselves (a speaker
either speaks or not, as md-eval counts it; pyannote counts a speaker's overlapping segments twice).
"""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyannote.core import Annotation, Segment  # noqa: E402
from pyannote.metrics.diarization import DiarizationErrorRate  # noqa: E402

from tests.der import der  # noqa: E402


def annotation(turns) -> Annotation:
    out = Annotation()
    for i, (start, end, speaker) in enumerate(turns):
        out[Segment(start, end), i] = speaker
    return out


def main() -> None:
    warnings.simplefilter("ignore")
    rng = random.Random(0)
    worst = {0.0: 0.0, 0.25: 0.0}
    for _ in range(30):
        ref, t = [], 0.0
        for _ in range(40):
            d = rng.uniform(1, 8)
            ref.append((t, t + d, rng.choice("ABC")))
            t += d + rng.uniform(0.1, 1)
        hyp = []
        for start, end, speaker in ref:
            if rng.random() < 0.1:
                continue  # missed
            s2 = max(start + rng.uniform(-0.4, 0.4), hyp[-1][1] if hyp else 0.0)
            label = {"A": "x", "B": "y", "C": "z"}[speaker] if rng.random() > 0.15 else rng.choice("xyzw")
            hyp.append((s2, max(s2 + 0.05, end + rng.uniform(-0.4, 0.4)), label))
        for collar in worst:
            ours = der(ref, hyp, collar=collar).der
            theirs = DiarizationErrorRate(collar=2 * collar)(annotation(ref), annotation(hyp))
            worst[collar] = max(worst[collar], abs(ours - theirs))
    for collar, diff in worst.items():
        print(f"collar {collar} s each side: max |DER ours - pyannote.metrics| over 30 cases = {diff:.5f}")


if __name__ == "__main__":
    main()
