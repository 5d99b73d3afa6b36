"""Queue plumbing only: the taskiq broker whose queue is the job store. No job logic lives here."""

from .broker import CHUNK_TASK_NAME, StoreBroker

__all__ = ["CHUNK_TASK_NAME", "StoreBroker"]
