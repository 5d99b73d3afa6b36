"""Sharing the cores between the engine and speaker embedding, without oversubscribing them.

A budget of one token per core. The faster-whisper engine takes as many tokens as its
CTranslate2 call has threads (each model worker's `cpu_threads`), for the length of that call;
a speaker embedding takes one (onnxruntime runs it on one thread) for the length of one chunk.
So CTranslate2 and onnxruntime never have more busy threads than cores between them, and a core
a model worker leaves idle goes to a waiting embedding. Waiting embeddings go before new
engine calls: the chunks they hold finish and free their slots, and the engine's next batch
gathers the chunks claimed meanwhile.

Nothing waits on anything while holding tokens, so there is no deadlock: an engine call ends
without embeddings, and an embedding ends without the engine.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager


class CpuShare:
    def __init__(self, cores: int | None = None):
        self.cores = max(1, cores or os.cpu_count() or 1)
        self._cond = threading.Condition()
        self._free = self.cores
        self._engine = 0  # engine calls running
        self._embedding = 0  # embeddings running
        self._waiting = 0  # embeddings waiting

    @contextmanager
    def engine(self, threads: int = 1):
        need = max(1, min(int(threads), self.cores))
        with self._cond:
            self._cond.wait_for(lambda: self._free >= need and self._waiting == 0)
            self._free -= need
            self._engine += 1
        try:
            yield
        finally:
            with self._cond:
                self._free += need
                self._engine -= 1
                self._cond.notify_all()

    @contextmanager
    def lane(self):
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._free >= 1)
            finally:
                self._waiting -= 1
                self._cond.notify_all()  # an engine call may have waited only for this one
            self._free -= 1
            self._embedding += 1
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._embedding -= 1
                self._cond.notify_all()

    @property
    def busy(self) -> tuple[int, int]:
        """(engine calls, embeddings) running now."""
        with self._cond:
            return self._engine, self._embedding


# One per process: every node, engine and embedder in it shares the same cores.
CPU = CpuShare()
