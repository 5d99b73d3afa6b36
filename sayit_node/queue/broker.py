"""The taskiq broker factory.

Standalone, chunks run through taskiq's InMemoryBroker: it executes a task as soon as it
is kicked and cannot be listened to, so the node's own scheduler does the pacing (at most
MAX_CONCURRENT_CHUNKS kicked at once). The task functions are the same in every mode.
"""

from __future__ import annotations

from taskiq import AsyncBroker, InMemoryBroker

CHUNK_TASK_NAME = "sayit.transcribe_chunk"


def make_broker() -> AsyncBroker:
    # Results live in the job store, not in taskiq's result backend: keep none.
    return InMemoryBroker(max_stored_results=1, await_inplace=False)
