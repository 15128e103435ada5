"""Moved to :mod:`snapcrawl.sinks.jsonl`; kept as a re-export until every caller imports from there."""

from .sinks.jsonl import ACCOUNT_KEY, Checkpoint, VolumeState

__all__ = ["ACCOUNT_KEY", "Checkpoint", "VolumeState"]
