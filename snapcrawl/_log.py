"""snapcrawl's loggers: structlog's bound loggers over the standard :mod:`logging` module, quiet until configured.

A library is silent until its host configures logging (Python's logging HOWTO, "Configuring Logging for a
Library"): every logger is named under ``snapcrawl``, which has a :class:`logging.NullHandler`, and nothing here
touches structlog's global configuration. An application that configures logging gets ordinary records: the
message is the event and its fields (``request.retry attempt=2 status=503``), each field is also an attribute
of the record (for JSON formatters), and :data:`EVENT_ATTRIBUTE` holds ``(event, fields)`` for renderers that
want them whole (the command line's). Levels: debug for what snapcrawl copes with itself (retries, rate
changes), info for a crawl's start and end, warning for what a user must act on, error for a crawl that stopped.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any, Final

from structlog.stdlib import BoundLogger, filter_by_level

__all__ = ["EVENT_ATTRIBUTE", "ROOT", "get_logger"]

#: The parent of every snapcrawl logger.
ROOT: Final = "snapcrawl"
#: The attribute of a :class:`logging.LogRecord` that holds snapcrawl's ``(event, fields)``.
EVENT_ATTRIBUTE: Final = "snapcrawl_event"
#: Where a record's caller is, counted from ``Logger.debug``: the structlog wrapper's three frames, then ours.
_STACKLEVEL: Final = 4
#: Attributes a ``LogRecord`` has of its own, which ``extra`` may not overwrite.
_RESERVED: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

logging.getLogger(ROOT).addHandler(logging.NullHandler())


def _to_record(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``Logger.debug`` & co. for one event: a readable message, fields as ``extra``."""
    event = str(event_dict.pop("event", ""))
    fields = dict(event_dict)
    extra: dict[str, Any] = {f"{key}_" if key in _RESERVED else key: value for key, value in fields.items()}
    extra[EVENT_ATTRIBUTE] = (event, fields)
    text = " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])
    return {"msg": text, "extra": extra, "stacklevel": _STACKLEVEL}


def get_logger(name: str) -> BoundLogger:
    """The logger ``snapcrawl.<name>``: structlog's ``log.debug("event", key=value)``, handled by ``logging``.

    Events below the logger's effective level are dropped first, before any work is done for them.
    """
    return BoundLogger(
        logging.getLogger(f"{ROOT}.{name}"),
        processors=[filter_by_level, _to_record],
        context={},
    )
