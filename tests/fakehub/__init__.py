"""A stand-in for the Hugging Face Hub on loopback (the subset `snapshot_download` uses)."""

from .server import FakeHub, FakeRepo

__all__ = ["FakeHub", "FakeRepo"]
