"""Destinations of a crawl: JSON Lines files, SQLite and PostgreSQL inventories."""

from ._base import Sink, VolumeProgress

__all__ = ["Sink", "VolumeProgress"]
