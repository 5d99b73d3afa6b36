"""Sharing the cores between the engine and speaker embedding, without oversubscribing them.

The engine (CTranslate2) already uses every core for a batch; speaker embedding runs one
onnxruntime thread per chunk. Running both at once puts more busy threads than cores on the
machine, and chunks in one engine batch finish together, so the work comes in alternating
phases anyway: `CpuShare` makes them alternate exactly. Engine calls go when no embedding runs
or waits; embeddings (at most one per core, "lanes") go when no engine call runs. Waiting
embeddings go first, so the chunks they hold finish and free their slots, and the next engine
batch gathers the chunks claimed meanwhile.

Nothing here waits on anything else while holding a place, so there is no deadlock: an engine
call ends without embeddings, and an embedding ends without the engine.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager


class CpuShare:
    def __init__(self, cores: int | None = None):
        self.lanes = max(1, cores or os.cpu_count() or 1)
        self._cond = threading.Condition()
        self._engine = 0  # engine calls running
        self._embedding = 0  # embeddings running
        self._waiting = 0  # embeddings waiting

    @contextmanager
    def engine(self):
        with self._cond:
            self._cond.wait_for(lambda: self._embedding == 0 and self._waiting == 0)
            self._engine += 1
        try:
            yield
        finally:
            with self._cond:
                self._engine -= 1
                self._cond.notify_all()

    @contextmanager
    def lane(self):
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._engine == 0 and self._embedding < self.lanes)
            finally:
                self._waiting -= 1
            self._embedding += 1
        try:
            yield
        finally:
            with self._cond:
                self._embedding -= 1
                self._cond.notify_all()

    @property
    def busy(self) -> tuple[int, int]:
        """(engine calls, embeddings) running now."""
        with self._cond:
            return self._engine, self._embedding


# One per process: every node, worker and embedder in it shares the same cores.
CPU = CpuShare()
