"""Diarization error rate, as NIST md-eval scores it (and pyannote.metrics' DiarizationErrorRate).

DER = (missed speech + false alarm + speaker confusion) / reference speech, over scored time.
- Time is cut into 10 ms frames. Each side (reference, hypothesis) says which speakers talk
  in each frame.
- Collar: `collar` seconds on EACH side of every reference segment boundary are not scored
  (md-eval's `-c 0.25`; pyannote.metrics calls the same thing collar=0.5, the total width).
- Speakers are mapped one-to-one, reference to hypothesis, to maximise the overlapping time
  (Hungarian algorithm); unmapped hypothesis speakers are always confusions.
- Per frame: miss = max(0, n_ref - n_hyp), false alarm = max(0, n_hyp - n_ref),
  confusion = min(n_ref, n_hyp) - correctly mapped pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME = 0.01


@dataclass
class DerResult:
    der: float
    miss: float  # seconds
    false_alarm: float
    confusion: float
    total: float  # scored reference speech, seconds
    mapping: dict[str, str]


def _grid(segments, speakers, n):
    out = np.zeros((len(speakers), n), dtype=bool)
    index = {s: i for i, s in enumerate(speakers)}
    for start, end, spk in segments:
        a, b = int(round(start / FRAME)), int(round(end / FRAME))
        out[index[spk], max(0, a):max(0, min(n, b))] = True
    return out


def der(reference: list[tuple[float, float, str]], hypothesis: list[tuple[float, float, str]], *,
        collar: float = 0.25) -> DerResult:
    from scipy.optimize import linear_sum_assignment

    end = max([e for _, e, _ in reference] + [e for _, e, _ in hypothesis] + [0.0])
    n = int(round(end / FRAME)) + 1
    ref_spk = sorted({s for *_, s in reference})
    hyp_spk = sorted({s for *_, s in hypothesis})
    R = _grid(reference, ref_spk, n)
    H = _grid(hypothesis, hyp_spk, n)
    scored = np.ones(n, dtype=bool)
    if collar > 0:
        c = int(round(collar / FRAME))
        for start, stop, _ in reference:
            for edge in (int(round(start / FRAME)), int(round(stop / FRAME))):
                scored[max(0, edge - c):min(n, edge + c)] = False
    R = R[:, scored]
    H = H[:, scored]
    mapping: dict[str, str] = {}
    correct = np.zeros(R.shape[1])
    if ref_spk and hyp_spk:
        overlap = R.astype(np.int64) @ H.T.astype(np.int64)
        rows, cols = linear_sum_assignment(-overlap)
        for r, h in zip(rows, cols):
            if overlap[r, h] > 0:
                mapping[ref_spk[r]] = hyp_spk[h]
                correct += R[r] & H[h]
    n_ref = R.sum(axis=0)
    n_hyp = H.sum(axis=0)
    miss = np.maximum(0, n_ref - n_hyp).sum() * FRAME
    fa = np.maximum(0, n_hyp - n_ref).sum() * FRAME
    conf = (np.minimum(n_ref, n_hyp) - correct).sum() * FRAME
    total = n_ref.sum() * FRAME
    return DerResult((miss + fa + conf) / total if total else 0.0, miss, fa, conf, total, mapping)
