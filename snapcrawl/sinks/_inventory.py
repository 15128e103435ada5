"""What both database sinks share: the table, pruning, and the crawl's identity and start time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Final

import structlog

from .._exceptions import ConfigError, SinkError, UnfitValueError
from .._models import Page, Snapshot
from ._batch import BatchingSink
from ._runs import RunRecord
from ._table import crawl_key, quote, size_beyond_int64, validate_table

__all__ = ["MAX_ACCOUNT_LENGTH", "InventorySink"]

#: Account names longer than this are refused (config names are short; derived ones are about 60 characters).
MAX_ACCOUNT_LENGTH: Final = 200


class InventorySink(BatchingSink):
    """A sink upserting into a table, with its checkpoint in the same database (see the SQLite and PostgreSQL ones).

    ``settings`` (endpoint, name filter, sort) identify the crawl: a crawl with other settings keeps a checkpoint
    of its own. With ``prune``, a completed listing deletes the rows this crawl did not see: their ``crawled_at``
    is older than :attr:`started_at`, which the checkpoint keeps so that a resumed crawl prunes the same way.

    Every row carries its ``account`` (and the ``endpoint`` host it came from): the table's key is
    ``(account, id)``, pruning and the checkpoint stay within the account, so crawls of many accounts share one
    table. :meth:`Crawler.crawl_into` binds a sink given no account to the crawl's own (see
    :func:`snapcrawl.fleet.default_account`); a sink written to directly needs ``account`` given.
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
        account: str | None = None,
        endpoint: str | None = None,
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
        self.account: str | None = None
        self._run_id: int | None = None  # this crawl's row in snapcrawl_runs
        self.endpoint: str = ""
        self._key = ""
        if account is not None:
            self.bind_account(account, endpoint)
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

    def bind_account(self, account: str, endpoint: str | None = None) -> None:
        """Write as ``account`` (from ``endpoint``, a host): before the sink is opened, and once."""
        if not account or len(account) > MAX_ACCOUNT_LENGTH:
            raise ConfigError(f"invalid account name {account[:40]!r}: use 1-{MAX_ACCOUNT_LENGTH} characters")
        if self.account is not None and self.account != account:
            raise ConfigError(f"the sink already writes as account {self.account!r}, not {account!r}")
        self.account = account
        self.endpoint = endpoint or str(self.settings.get("endpoint") or "")
        self._key = crawl_key(self.table, {**self.settings, "account": account})

    def _need_account(self) -> str:
        """The account rows are written as; a sink opened without one is a programming error, said plainly."""
        if self.account is None:
            raise ConfigError(
                f"{type(self).__name__} needs an account: pass account=... or crawl into it with Crawler.crawl_into"
            )
        return self.account

    async def begin_run(self) -> None:
        """Open the destination and record that a crawl of this account starts (a row of ``snapcrawl_runs``)."""
        await self._ensure_open()
        async with self._lock:
            self._run_id = await self._begin_run(self._now())

    async def end_run(self, *, complete: bool, snapshots: int, failed: list[str | None]) -> None:
        """Finish this crawl's row: ``complete`` if it ran to its end with no volume failed; never raises.

        Called however the crawl ended: a destination that broke, or fails now, is logged, not raised, so that
        the error that ended the crawl is the one reported.
        """
        if self._run_id is None or self._closed or self._broken is not None:
            return
        record = RunRecord(
            ended_at=self._now(),
            complete=complete,
            snapshots=snapshots,
            rows_upserted=self.rows,
            rows_pruned=self.pruned,
            failed_volumes=failed,
        )
        try:
            async with self._lock:
                await self._end_run(self._run_id, record)
        except SinkError as exc:
            structlog.get_logger("snapcrawl").warning("runs.not_recorded", account=self.account, error=str(exc))

    async def _begin_run(self, started_at: dt.datetime) -> int:
        raise NotImplementedError

    async def _end_run(self, run: int, record: RunRecord) -> None:
        raise NotImplementedError
