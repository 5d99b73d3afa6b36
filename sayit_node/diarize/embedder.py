"""Speaker embeddings of sliding windows over the speech in one chunk (onnxruntime, no torch).

Each window is `WINDOW_FRAMES` mel frames (1.6 s, the length the GE2E encoder was trained on),
every `HOP_FRAMES` (0.8 s) over the VAD speech of the chunk. A speech region shorter than a
window gets one window centred on it (the audio around it fills the rest). Each window is
represented for labelling by its *core*: its centre +- half a hop, clipped to the region, so
cores tile the speech without overlap.

onnxruntime runs with one intra-op and one inter-op thread and no spinning: the node calls it
on the engine's own thread pool beside CTranslate2, and one busy-waiting thread pool per
library on 2 cores is how the two starved (and hung) each other before. Chunks are embedded
side by side, one per core the engine leaves free (`sayit_node.cpu.CpuShare`): chunks of an
engine batch finish transcribing together, and embedding them one after another behind one
lock left cores idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cpu import CPU, CpuShare
from .features import HOP, SAMPLE_RATE, TARGET_DBFS, mel_frames

WINDOW_FRAMES = 160  # 1.6 s
HOP_FRAMES = 80  # 0.8 s
WINDOW_SECONDS = WINDOW_FRAMES * HOP / SAMPLE_RATE
HOP_SECONDS = HOP_FRAMES * HOP / SAMPLE_RATE
MIN_REGION_SECONDS = 0.3  # shorter speech gets no window of its own
BATCH = 64  # windows per ONNX run: a whole chunk (<= 30 s: <= 37 windows) in one run


@dataclass
class Windows:
    """Windows of one chunk: times in seconds relative to the chunk, unit-norm embeddings."""

    cores: list[tuple[float, float]]
    embeddings: np.ndarray  # (n, dim) float32

    def __len__(self) -> int:
        return len(self.cores)


def session_options():
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class SpeakerEmbedder:
    """A speaker-embedding ONNX model: `mels` (batch, 160, 40) -> `embedding` (batch, dim)."""

    def __init__(self, model_path: str | Path, name: str = "ge2e", share: CpuShare | None = None):
        import onnxruntime as ort

        self.name = name
        self.path = Path(model_path)
        self._session = ort.InferenceSession(str(self.path), sess_options=session_options(),
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.share = share or CPU  # one chunk per core the engine is not using

    def embed_mels(self, mels: np.ndarray) -> np.ndarray:
        out = [self._session.run(None, {self._input: mels[i:i + BATCH]})[0] for i in range(0, len(mels), BATCH)]
        emb = np.concatenate(out).astype(np.float32) if out else np.zeros((0, 256), np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norms, 1e-8)

    def embed_chunk(self, samples: np.ndarray, regions: list[tuple[int, int]]) -> Windows:
        """Windows over `regions` (speech as sample ranges within `samples`). Holds no lane:
        the node calls `embed_speech`.

        Mel frames are computed once for the whole chunk and each window takes its 160 frames
        (window starts rounded to a 10 ms frame); the per-window volume normalisation is a
        scale of those power frames by (target / window RMS)^2, from a running sum of squares.
        """
        starts, cores = plan_windows(len(samples), regions)
        if not starts:
            return Windows([], np.zeros((0, 256), np.float32))
        return Windows(cores, self.embed_mels(window_mels(samples, starts)))

    def embed_speech(self, samples: np.ndarray, regions=None) -> Windows:
        """Windows over the chunk's speech (VAD when `regions` is None), holding a lane throughout."""
        from ..audio import speech_regions

        with self.share.lane():
            return self.embed_chunk(samples, speech_regions(samples) if regions is None else regions)


def window_mels(samples: np.ndarray, starts: list[int]) -> np.ndarray:
    """(len(starts), WINDOW_FRAMES, N_MELS) volume-normalised mel power of each window."""
    win = WINDOW_FRAMES * HOP
    samples = np.asarray(samples, dtype=np.float32)
    if len(samples) < win:
        samples = np.pad(samples, (0, win - len(samples)))
    mel = mel_frames(samples)
    last = len(mel) - WINDOW_FRAMES
    firsts = [min(max(0, int(round(s / HOP))), last) for s in starts]
    energy = np.concatenate([[0.0], np.cumsum(np.square(samples, dtype=np.float64))])
    out = np.empty((len(firsts), WINDOW_FRAMES, mel.shape[1]), dtype=np.float32)
    target = 10 ** (TARGET_DBFS / 20)
    for i, f in enumerate(firsts):
        a = f * HOP
        b = min(a + win, len(samples))
        rms = np.sqrt(max(energy[b] - energy[a], 0.0) / win)
        gain = (target / rms) ** 2 if rms >= 1e-6 else 1.0
        out[i] = mel[f:f + WINDOW_FRAMES] * np.float32(gain)
    return out


def plan_windows(n_samples: int, regions: list[tuple[int, int]]) -> tuple[list[int], list[tuple[float, float]]]:
    """Window start samples and their cores (seconds) over speech regions. Deterministic."""
    win = WINDOW_FRAMES * HOP
    hop = HOP_FRAMES * HOP
    starts: list[int] = []
    cores: list[tuple[float, float]] = []
    for r0, r1 in sorted(regions):
        r0, r1 = max(0, int(r0)), min(n_samples, int(r1))
        length = r1 - r0
        if length < MIN_REGION_SECONDS * SAMPLE_RATE:
            continue
        if length <= win:
            centre = (r0 + r1) // 2
            start = min(max(0, centre - win // 2), max(0, n_samples - win))
            starts.append(start)
            cores.append((r0 / SAMPLE_RATE, r1 / SAMPLE_RATE))
            continue
        count = 1 + int(np.ceil((length - win) / hop))
        # Spread the windows evenly so the last one ends at the region's end.
        step = (length - win) / (count - 1) if count > 1 else 0
        region_starts = [r0 + int(round(i * step)) for i in range(count)]
        centres = [s + win / 2 for s in region_starts]
        for i, s in enumerate(region_starts):
            lo = r0 if i == 0 else (centres[i - 1] + centres[i]) / 2
            hi = r1 if i == count - 1 else (centres[i] + centres[i + 1]) / 2
            starts.append(s)
            cores.append((lo / SAMPLE_RATE, hi / SAMPLE_RATE))
    return starts, cores
