"""What both database sinks share: the table, pruning, and the crawl's identity and start time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from .._exceptions import ConfigError, UnfitValueError
from .._models import Page, Snapshot
from ._batch import BatchingSink
from ._table import crawl_key, quote, size_beyond_int64, validate_table

__all__ = ["InventorySink"]


class InventorySink(BatchingSink):
    """A sink upserting into a table, with its checkpoint in the same database (see the SQLite and PostgreSQL ones).

    ``settings`` (endpoint, name filter, sort) identify the crawl: a crawl with other settings keeps a checkpoint
    of its own. With ``prune``, a completed listing deletes the rows this crawl did not see: their ``crawled_at``
    is older than :attr:`started_at`, which the checkpoint keeps so that a resumed crawl prunes the same way.
    """

    def __init__(
        self,
        destination: str,
        *,
        table: str,
        prune: bool,
        settings: Mapping[str, object] | None,
        batch_rows: int,
        max_rows: int,
        commit_interval: float,
        clock: Callable[[], float] | None,
        now: Callable[[], dt.datetime] | None,
    ) -> None:
        super().__init__(
            destination, batch_rows=batch_rows, max_rows=max_rows, commit_interval=commit_interval, clock=clock
        )
        self.table = validate_table(table)
        self.prune = prune
        self.settings = dict(settings or {})
        if prune and self.settings.get("name"):
            raise ConfigError(
                "{prune} with a {name} filter would delete every snapshot the filter leaves out",
                options=("prune", "name"),
            )
        #: Rows deleted by pruning, in this run.
        self.pruned = 0
        #: When this crawl started (kept in the checkpoint, so a resumed crawl keeps it); set when opened.
        self.started_at: dt.datetime | None = None
        self._key = crawl_key(self.table, self.settings)
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._q = quote(self.table)

    async def write(self, page: Page) -> None:
        """Take a page, unless a snapshot of it holds a value the table cannot: then :class:`UnfitValueError`, and
        nothing of the page is taken (the crawl fails that volume; every other volume's rows are committed)."""
        if page.snapshots and (problem := self.unfit(page.snapshots)) is not None:
            raise problem
        await super().write(page)

    def unfit(self, snapshots: list[Snapshot]) -> UnfitValueError | None:
        """Why the first of ``snapshots`` the table cannot hold does not fit; ``None`` when every one fits."""
        return size_beyond_int64(snapshots, self.destination)
