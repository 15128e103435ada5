"""Destinations of a crawl: JSON Lines files, SQLite and PostgreSQL inventories."""

from ._base import CommitListener, Sink, VolumeProgress

__all__ = ["CommitListener", "Sink", "VolumeProgress"]
