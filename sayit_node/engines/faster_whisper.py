"""faster-whisper (CTranslate2) engine: the default on x86 and Linux.

Two ways to run chunks, chosen by `batch_size`:
- batch_size > 1 (the default): the node keeps one batch of chunks in flight (two when
  standalone, see Node.slots); `workers` model workers share them, each idle worker taking its
  even share of the waiting chunks (at most `batch_size`) as one
  CTranslate2 batch with timestamp tokens (see fw_batch.py). A window that stops inside an
  open segment, or ends early with speech still to come, goes on from there at once, in a round
  of the remainders alone (so the encoder sees their few seconds, not a full chunk's 30 s); a
  window that fails faster-whisper's quality checks gets the temperature fallback alone (a
  resumed one: on the rest of its chunk).
- batch_size == 1: one `WhisperModel.transcribe` call per chunk, `workers` of them in parallel.
Word timestamps and explicit temperatures always take the single-chunk path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import nullcontext
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..cpu import CPU
from . import fw_batch
from .base import FALLBACK_TEMPERATURES, SAMPLE_RATE, Segment, TranscribeOptions, Word

log = logging.getLogger(__name__)

# A batch waits this long for more chunks after the first arrives (chunks of one job are
# claimed within milliseconds of each other), never longer than GATHER_MAX in all.
GATHER_IDLE = 0.02
GATHER_MAX = 0.15


@dataclass(eq=False)
class _Work:
    """A chunk on the batched path: its audio, and how far its rounds have got."""

    samples: np.ndarray
    options: TranscribeOptions
    future: Future
    offset: float = 0.0  # seconds into the chunk where the next round starts
    rounds: int = 0
    segments: list = field(default_factory=list)

    def piece(self) -> np.ndarray:
        return self.samples[int(round(self.offset * SAMPLE_RATE)):]

    def context(self) -> str | None:
        """The client's prompt and what the chunk said before this piece: the prompt of a
        fallback on it (faster-whisper conditions a window on the previous text too)."""
        return " ".join(t.strip() for t in [self.options.prompt, *(s.text for s in self.segments)] if t) or None


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(
        self,
        model_dir: str,
        model_name: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        parallel_chunks: int = 1,
        cores: int = 1,
        batch_size: int = 1,
    ) -> None:
        from faster_whisper import WhisperModel

        # parallel_chunks = model workers (threads calling CTranslate2 at once), each with
        # cores // workers intra-op threads. Batched: the workers share one queue of chunks and
        # `batch_size` is the most one call takes (the node holds one or two batches in flight).
        self.parallel_chunks = max(1, parallel_chunks)
        self.batch_size = max(1, batch_size)
        cpu_threads = max(1, cores // self.parallel_chunks)
        self.cpu_threads = cpu_threads  # held from sayit_node.cpu for each CTranslate2 call
        self.model_name = model_name
        self.device = device
        self.compute_type = compute_type
        self._model = WhisperModel(
            str(model_dir),
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=self.parallel_chunks,
        )
        self._languages = list(self._model.supported_languages)
        self._pending: deque = deque()  # fresh chunks (_Work), oldest first
        self._cv = threading.Condition()
        self._idle = 0  # batch workers waiting for chunks
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if self.batch_size > 1:
            for i in range(self.parallel_chunks):
                thread = threading.Thread(target=self._batch_loop, name=f"sayit-batch-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)
        log.info(
            "faster-whisper loaded %s (%s, %s, %d workers x %d threads, batches of up to %d chunks)",
            model_name, device, compute_type, self.parallel_chunks, cpu_threads, self.batch_size,
        )

    @property
    def slots(self) -> int:
        """Chunks this engine wants in flight to keep busy (a standalone node holds twice this
        for a batching engine, Node.slots)."""
        if self.batch_size > 1:
            return max(self.batch_size, self.parallel_chunks)
        return self.parallel_chunks

    @property
    def is_multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    @property
    def supported_languages(self) -> list[str]:
        return self._languages

    def detect_language(self, samples: np.ndarray) -> tuple[str, float]:
        if not self.is_multilingual:
            return "en", 1.0
        language, probability, _ = self._model.detect_language(samples[: 30 * SAMPLE_RATE])
        return language, float(probability)

    # -- one chunk ----------------------------------------------------------------------------
    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> list[Segment]:
        if self.batch_size > 1 and self._batchable(samples, options):
            work = _Work(samples, options, Future())
            with self._cv:
                self._pending.append(work)
                self._cv.notify_all()
            return work.future.result()
        return self._transcribe_one(samples, options)

    @staticmethod
    def _batchable(samples: np.ndarray, options: TranscribeOptions) -> bool:
        return (not options.word_timestamps and options.temperature == 0
                and len(samples) <= 30 * SAMPLE_RATE)

    def _on_cores(self):
        """Hold this worker's threads from the process's core budget (sayit_node.cpu) for a
        CTranslate2 call, so speaker embeddings only run on cores the engine leaves free."""
        return CPU.engine(self.cpu_threads) if self.device == "cpu" else nullcontext()

    def _transcribe_one(self, samples: np.ndarray, options: TranscribeOptions) -> list[Segment]:
        temperature = FALLBACK_TEMPERATURES if options.temperature == 0 else options.temperature
        # CTranslate2 runs while the generator is consumed: hold the cores throughout.
        with self._on_cores():
            segments, _info = self._model.transcribe(
                samples,
                language=options.language,
                task=options.task,
                beam_size=options.beam_size,
                temperature=temperature,
                initial_prompt=options.prompt or None,
                word_timestamps=options.word_timestamps,
                vad_filter=False,  # chunks are already cut at silences by the job pipeline
            )
            return [
                Segment(
                    start=round(s.start, 3),
                    end=round(s.end, 3),
                    text=s.text,
                    tokens=list(s.tokens),
                    temperature=float(s.temperature or 0.0),
                    avg_logprob=float(s.avg_logprob),
                    compression_ratio=float(s.compression_ratio),
                    no_speech_prob=float(s.no_speech_prob),
                    words=None
                    if s.words is None
                    else [Word(round(w.start, 3), round(w.end, 3), w.word, float(w.probability)) for w in s.words],
                )
                for s in segments
            ]

    # -- batches ------------------------------------------------------------------------------
    def _gather(self) -> list[tuple]:
        """The next batch for one worker: once chunks wait, let the burst arrive (chunks of one
        job are claimed within milliseconds of each other, GATHER_MAX at most), then take this
        worker's share: the waiting chunks split evenly over the idle workers, at most
        batch_size. Two 1-thread workers on two halves beat one 2-thread call on the whole
        (bench notes in docs/architecture.md)."""
        with self._cv:
            self._idle += 1
            try:
                while not self._stop.is_set() and not self._pending:
                    self._cv.wait(0.5)
                if self._stop.is_set():
                    return []
                deadline = time.monotonic() + GATHER_MAX
                # Until every worker could have a full batch: a standalone node holds two
                # batches, and splitting a burst before it is all in would be uneven.
                while len(self._pending) < self.batch_size * self.parallel_chunks and not self._stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    seen = len(self._pending)
                    self._cv.wait(min(GATHER_IDLE, left))
                    if len(self._pending) == seen:
                        break  # nothing new for GATHER_IDLE: the burst is in
                    if not self._pending:
                        break
                share = min(self.batch_size, -(-len(self._pending) // max(1, self._idle)))
                batch = [self._pending.popleft() for _ in range(min(share, len(self._pending)))]
                self._cv.notify_all()
                return batch
            finally:
                self._idle -= 1

    def _batch_loop(self) -> None:
        while not self._stop.is_set():
            batch = self._gather()
            if not batch:
                continue
            groups: dict[tuple, list[_Work]] = {}
            for work in batch:
                o = work.options
                groups.setdefault((o.language, o.task, o.beam_size, o.prompt or None), []).append(work)
            for (language, task, beam_size, prompt), items in groups.items():
                self._run_group(items, language, task, beam_size, prompt)

    def _run_group(self, items: list[_Work], language, task, beam_size, prompt) -> None:
        """Rounds for these pieces until every chunk has its answer. A piece whose window ended
        inside an open segment goes on from there in the next round, with the other remainders
        of this round and nothing else: the encoder sees the longest piece of a round plus a
        margin, so a few seconds of remainder batched with fresh ~25 s chunks would cost a full
        window (base, 6-minute file: 5 of 14 chunks resumed; 11% less work this way)."""
        live = [w for w in items if w.future.set_running_or_notify_cancel()]
        while live:
            live = self._round(live, language, task, beam_size, prompt)

    def _round(self, live: list[_Work], language, task, beam_size, prompt) -> list[_Work]:
        """One batched encode + generate; returns the pieces to go on with."""
        try:
            with self._on_cores():
                results = fw_batch.generate_round(self._model, [w.piece() for w in live], language=language,
                                                  task=task, beam_size=beam_size, prompt=prompt)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting chunk
            for w in live:
                w.future.set_exception(exc)
            return []
        again = []
        for w, result in zip(live, results):
            try:
                if result == fw_batch.FAILED:
                    # Failed the quality checks: this window again, alone, with the temperature
                    # fallback, prompted with the chunk's text so far. Only this window: a resumed
                    # piece keeps what its earlier rounds found, as faster-whisper falls back per
                    # window. (Rerunning the whole chunk cost 2.3 s on one core, the other idle, at
                    # the end of a 17 s job; sampled without the chunk's text as prompt, a 1.2 s
                    # remainder gave "Thanks for watching!".)
                    piece = w.piece()
                    log.debug("%.1f s of a chunk rerun with the temperature fallback", len(piece) / SAMPLE_RATE)
                    with self._on_cores():
                        result = fw_batch.fallback_window(self._model, piece, language=language, task=task,
                                                          beam_size=beam_size, prompt=w.context())
                segments, resume = result
                w.segments += [Segment(start=round(w.offset + s["start"], 3), end=round(w.offset + s["end"], 3),
                                       text=s["text"], tokens=list(s["tokens"]), temperature=s["temperature"],
                                       avg_logprob=float(s["avg_logprob"]),
                                       compression_ratio=float(s["compression_ratio"]),
                                       no_speech_prob=float(s["no_speech_prob"])) for s in segments]
                w.rounds += 1
                if resume is not None and w.rounds < fw_batch.MAX_ROUNDS:
                    w.offset += resume
                    again.append(w)
                else:
                    w.future.set_result(w.segments)
            except BaseException as exc:  # noqa: BLE001
                w.future.set_exception(exc)
        return again

    def close(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        self._model = None  # CTranslate2 frees the model when the last reference goes
