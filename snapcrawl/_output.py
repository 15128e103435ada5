"""Moved to :mod:`snapcrawl.sinks.jsonl`; kept as a re-export until every caller imports from there."""

from .sinks.jsonl import JsonLinesWriter, encode_snapshots

__all__ = ["JsonLinesWriter", "encode_snapshots"]
