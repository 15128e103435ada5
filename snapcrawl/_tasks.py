"""A crawl's task groups end in an error, never in silence, when one of their tasks was cancelled without cause.

anyio's task group drops a task that ends in a bare ``CancelledError`` that none of its cancel scopes asked for
(raised by a sink, a hook or a library's stray ``Task.cancel()``), and cancels the task's siblings: the group
then exits as if every worker had run out of work, and the crawl would report a truncated listing as complete,
replace yesterday's output with it and prune what it missed. Nothing else cancels a crawl's task group and lets
its block end normally (an exception, a stopped crawl or a caller's cancellation all propagate out of it), so a
group whose scope was cancelled by the time its block ended lost a task that way.
"""

from __future__ import annotations

from anyio.abc import TaskGroup

from ._exceptions import SnapcrawlError

__all__ = ["TaskDroppedError", "check_none_dropped"]


class TaskDroppedError(SnapcrawlError):
    """A task of the crawl ended in a cancellation nobody asked for: the crawl stops rather than seem complete."""


def check_none_dropped(tg: TaskGroup, what: str) -> None:
    """Raise :class:`TaskDroppedError` if ``tg``, whose block just ended normally, lost one of its tasks (``what``)."""
    if tg.cancel_scope.cancel_called:
        raise TaskDroppedError(
            f"a task of the crawl ({what}) was cancelled without cause; the crawl stops here, "
            "and the next run resumes it"
        )
