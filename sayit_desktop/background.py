"""Run blocking calls (HTTP) on worker threads; deliver results on the Qt main thread."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, Signal, Slot

log = logging.getLogger(__name__)


class Background(QObject):
    """`submit(fn, on_done)`: fn runs on a pool thread; on_done(result, error) runs on the thread
    that owns this object (the UI thread), so the UI never waits for the network."""

    _finished = Signal(object, object, object)

    def __init__(self, workers: int = 4, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sayit-http")
        self._closed = False
        # Queued even when the call finished at once: callbacks never run inside submit().
        self._finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def submit(self, fn: Callable[[], Any],
               on_done: Callable[[Any, BaseException | None], None] | None = None) -> Future | None:
        if self._closed:
            return None
        future = self._pool.submit(fn)

        def done(fut: Future) -> None:
            if self._closed:
                return
            try:
                result, error = fut.result(), None
            except BaseException as exc:  # delivered to the callback
                result, error = None, exc
            try:
                self._finished.emit(on_done, result, error)
            except RuntimeError:  # the QObject is already gone (app quitting)
                pass

        future.add_done_callback(done)
        return future

    @Slot(object, object, object)
    def _deliver(self, on_done, result, error) -> None:
        if on_done is None:
            if error is not None:
                log.debug("background call failed: %s", error)
            return
        try:
            on_done(result, error)
        except Exception:
            log.exception("background callback failed")

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
