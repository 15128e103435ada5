"""Capture snapcrawl's log records in tests, in the shape of ``structlog.testing.capture_logs``' entries."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from snapcrawl._log import EVENT_ATTRIBUTE, ROOT

__all__ = ["capture_logs"]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        event, fields = getattr(record, EVENT_ATTRIBUTE, (record.getMessage(), {}))
        fields = dict(fields)
        self.entries.append({"event": event, "log_level": record.levelname.lower(), "logger": record.name, **fields})


@contextlib.contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Every record of the ``snapcrawl`` loggers at ``level`` and above while the block runs, as dicts."""
    logger = logging.getLogger(ROOT)
    handler, before = _Capture(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler.entries
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
