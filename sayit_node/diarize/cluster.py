"""Clustering window embeddings into speakers, and labelling transcript segments.

Agglomerative clustering, average linkage on cosine distance (scipy) of mean-centred window
embeddings; the speaker count is `speakers`, or chosen by silhouette within
[`min_speakers`, `max_speakers`]. With an automatic count, clusters holding less than
`MIN_CLUSTER_SECONDS` of speech are folded into the nearest big one (a stray window is rarely
a new person). Labels are "Speaker 1", "Speaker 2", ... in order of first appearance, so the
same embeddings always give the same labelling on any node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_AUTO_SPEAKERS = 10
MIN_SILHOUETTE = 0.15  # below this, a split into 2+ groups is one voice's own variation
MIN_CLUSTER_SECONDS = 3.0
# Two clusters whose mean (raw) embeddings are this similar are one voice: the two halves of one
# espeak-ng voice score 0.95-0.99, the closest different voices measured here 0.93 (see notes).
SAME_VOICE = 0.95


@dataclass
class Turn:
    start: float
    end: float
    speaker: str


def cluster(embeddings: np.ndarray, durations: np.ndarray | None = None, *, speakers: int | None = None,
            min_speakers: int | None = None, max_speakers: int | None = None) -> np.ndarray:
    """Cluster ids (0..k-1, in order of first appearance) for each row of `embeddings`.

    Embeddings are centred on the job's mean first (GE2E's outputs are all positive, so raw
    cosines between any two voices are high) and clustered with average linkage on cosine
    distance. The count: `speakers` when given; else the k in [min, max] (2..10 by default)
    with the best silhouette; when no split reaches MIN_SILHOUETTE, the fewest allowed (1 by default).
    """
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    lo = max(1, min_speakers or 1)
    hi = max(lo, min(n, max_speakers or MAX_AUTO_SPEAKERS))
    if speakers:
        lo = hi = max(1, min(speakers, n))
    if n == 1 or hi == 1:
        return np.zeros(n, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage

    xc = x - x.mean(axis=0)
    xc = xc / np.maximum(np.linalg.norm(xc, axis=1, keepdims=True), 1e-12)
    tree = linkage(xc, method="average", metric="cosine")
    if lo == hi:
        return _by_first_appearance(fcluster(tree, t=lo, criterion="maxclust"))
    distances = 1.0 - xc @ xc.T
    best_score, best = -1.0, np.zeros(n, dtype=int)
    for k in range(max(2, lo), hi + 1):
        labels = fcluster(tree, t=k, criterion="maxclust")
        if durations is not None:
            labels = _fold_small(xc, labels, np.asarray(durations, dtype=np.float64))
        if len(set(labels.tolist())) < max(2, lo):
            continue
        score = silhouette(distances, labels)
        if score > best_score + 1e-9:
            best_score, best = score, labels
    if best_score < MIN_SILHOUETTE:  # no real structure: the fewest speakers allowed
        if lo <= 1:
            return np.zeros(n, dtype=int)
        return _by_first_appearance(fcluster(tree, t=lo, criterion="maxclust"))
    return _by_first_appearance(_merge_same_voice(x, best, lo))


def _merge_same_voice(x: np.ndarray, labels: np.ndarray, lo: int) -> np.ndarray:
    """Merge the two most similar clusters while their raw centroids are SAME_VOICE-close."""
    labels = labels.copy()
    while True:
        ids = sorted(set(labels.tolist()))
        if len(ids) <= max(lo, 1):
            return labels
        c = np.stack([x[labels == i].mean(axis=0) for i in ids])
        c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        sims = c @ c.T
        np.fill_diagonal(sims, -1.0)
        i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
        if sims[i, j] < SAME_VOICE:
            return labels
        labels[labels == ids[j]] = ids[i]


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient for a precomputed distance matrix (singletons score 0)."""
    ids = sorted(set(labels.tolist()))
    if len(ids) < 2:
        return -1.0
    n = len(labels)
    masks = [labels == c for c in ids]
    sums = np.stack([distances[:, m].sum(axis=1) for m in masks], axis=1)  # (n, k)
    sizes = np.array([m.sum() for m in masks], dtype=np.float64)
    own = np.array([ids.index(v) for v in labels.tolist()])
    own_size = sizes[own]
    a = sums[np.arange(n), own] / np.maximum(own_size - 1, 1)
    mean_other = sums / sizes[None, :]
    mean_other[np.arange(n), own] = np.inf
    b = mean_other.min(axis=1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    s[own_size <= 1] = 0.0
    return float(s.mean())


def _fold_small(x: np.ndarray, labels: np.ndarray, durations: np.ndarray) -> np.ndarray:
    ids = sorted(set(labels.tolist()))
    total = {c: durations[labels == c].sum() for c in ids}
    big = [c for c in ids if total[c] >= MIN_CLUSTER_SECONDS]
    if not big or len(big) == len(ids):
        return labels
    centroids = np.stack([x[labels == c].mean(axis=0) for c in big])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    out = labels.copy()
    for i in np.where(~np.isin(labels, big))[0]:
        out[i] = big[int(np.argmax(centroids @ x[i]))]
    return out


def _by_first_appearance(labels: np.ndarray) -> np.ndarray:
    order: dict[int, int] = {}
    for value in labels.tolist():
        order.setdefault(value, len(order))
    return np.array([order[v] for v in labels.tolist()], dtype=int)


def speaker_name(cluster_id: int) -> str:
    return f"Speaker {cluster_id + 1}"


def turns(cores: list[tuple[float, float]], labels: np.ndarray) -> list[Turn]:
    """Window cores with their labels, adjacent same-speaker pieces merged (gaps < 0.5 s)."""
    out: list[Turn] = []
    for (start, end), label in sorted(zip(cores, labels.tolist())):
        name = speaker_name(label)
        if out and out[-1].speaker == name and start - out[-1].end < 0.5:
            out[-1].end = max(out[-1].end, end)
        else:
            out.append(Turn(start, end, name))
    return out


def label_span(start: float, end: float, timeline: list[Turn]) -> str | None:
    """The speaker with the most overlap with [start, end]; the nearest turn when none overlaps."""
    if not timeline:
        return None
    overlap: dict[str, float] = {}
    for t in timeline:
        o = min(end, t.end) - max(start, t.start)
        if o > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + o
    if overlap:
        return max(overlap.items(), key=lambda kv: (kv[1], -int(kv[0].split()[-1])))[0]
    mid = (start + end) / 2
    nearest = min(timeline, key=lambda t: (max(t.start - mid, mid - t.end, 0.0), t.start))
    return nearest.speaker
