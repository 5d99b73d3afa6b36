"""Queue plumbing only: which taskiq broker a node uses. No job logic lives here."""

from .broker import CHUNK_TASK_NAME, make_broker

__all__ = ["CHUNK_TASK_NAME", "make_broker"]
