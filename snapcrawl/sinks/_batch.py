"""What every sink shares: a bounded buffer of pages, commits in batches, and progress folded per volume.

Pages are buffered until ``batch_rows`` rows or ``commit_interval`` seconds have gathered; then the task that
noticed commits them (one commit at a time, shielded from cancellation so that it is atomic as seen from the
crawl). While ``max_rows`` rows wait, ``write`` waits for the commit in progress: a slow destination slows the
crawl instead of growing memory. A failed commit breaks the sink: nothing after it is ever committed, so no
later commit can cover rows the failed one lost.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Literal

import anyio

from .._exceptions import SinkError
from .._models import Page, Snapshot
from .._ranges import RangePage, RangeProgress, RangeStep
from .._text import printable
from ._base import CommitListener, VolumeProgress

__all__ = ["Batch", "BatchingSink", "VolumeStep"]

Status = Literal["done", "partial", "failed"]
#: The longest error text a checkpoint keeps for a failed volume.
_MAX_ERROR = 2000


@dataclasses.dataclass(slots=True)
class VolumeStep:
    """How one commit moves one volume on: its new status, markers (``None``: unchanged) and pages added."""

    status: Status
    markers: tuple[str, ...] | None = None
    pages: int = 0
    error: str | None = None

    def progress(self, before: VolumeProgress | None) -> VolumeProgress:
        """The volume's progress once this step is applied to ``before``."""
        markers = self.markers if self.markers is not None else (before.markers if before else ())
        return VolumeProgress(self.status, markers, (before.pages if before else 0) + self.pages)


@dataclasses.dataclass(slots=True)
class Batch:
    """Everything one commit writes: pages in arrival order and the per-volume steps they make."""

    pages: list[Page] = dataclasses.field(default_factory=list)
    steps: dict[str | None, VolumeStep] = dataclasses.field(default_factory=dict)
    rows: int = 0
    #: The account-wide fan-out's ranges this batch moves on (see :mod:`snapcrawl._ranges`).
    ranges: dict[int, RangeStep] = dataclasses.field(default_factory=dict)

    def add(self, page: Page) -> None:
        """Take a page: its rows, and the step it makes for its volume."""
        self.pages.append(page)
        self.rows += len(page.snapshots)
        step = self.steps.setdefault(page.volume_id, VolumeStep("partial"))
        step.status = "done" if page.last else "partial"
        step.pages += 1
        step.error = None
        if page.snapshots:
            step.markers = tuple(snapshot.id for snapshot in reversed(page.snapshots))
        if isinstance(page, RangePage):
            self.ranges.setdefault(page.range, RangeStep()).add(page)

    def fail(self, volume_id: str | None, error: str) -> None:
        """Note a failed volume; the rows it delivered stay."""
        step = self.steps.setdefault(volume_id, VolumeStep("failed"))
        step.status = "failed"
        step.error = error

    def latest(self) -> dict[str, Snapshot]:
        """Each snapshot once, as the latest page showed it (one upsert may not touch a row twice)."""
        return {snapshot.id: snapshot for page in self.pages for snapshot in page.snapshots}

    @property
    def finished(self) -> list[str | None]:
        """The volumes this batch completes or fails."""
        return [volume for volume, step in self.steps.items() if step.status != "partial"]

    @property
    def completed(self) -> list[str | None]:
        """The volumes whose listing this batch completes: the ones a pruning sink prunes."""
        return [volume for volume, step in self.steps.items() if step.status == "done"]

    def __bool__(self) -> bool:
        return bool(self.pages or self.steps)


class BatchingSink:
    """The buffering, committing and bookkeeping half of a sink; subclasses write a :class:`Batch` durably.

    Subclasses implement ``_open`` (connect, check, and return the committed progress), ``_commit_batch`` (write one
    batch in one transaction, or raise :class:`SinkError` having committed none of it), ``_finish`` and
    ``_close``. ``destination`` names the destination in errors, without any password.
    """

    #: Databases keep their checkpoint: every one resumes (JSON Lines only with a state file).
    resumable: bool = True

    def __init__(
        self,
        destination: str,
        *,
        batch_rows: int = 5_000,
        max_rows: int = 20_000,
        commit_interval: float = 0.5,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if batch_rows < 1 or max_rows < batch_rows:
            raise ValueError("need 1 <= batch_rows <= max_rows")
        self.destination = destination
        self.on_commit: CommitListener | None = None
        #: Rows written (upserted or appended) and committed by this sink.
        self.rows = 0
        #: Commits made by this sink.
        self.commits = 0
        #: The largest number of rows ever buffered at once (the bound the backpressure keeps).
        self.peak_buffered = 0
        #: Rows of the commit in progress.
        self.in_flight = 0
        #: Writers waiting for room in the buffer right now (held back by backpressure).
        self.waiting = 0
        self._batch_rows = batch_rows
        self._max_rows = max_rows
        self._interval = commit_interval
        self._clock = clock or time.monotonic
        self._last_commit = self._clock()
        self._pending = Batch()
        self._lock = anyio.Lock()
        self._opened = False
        self._closed = False
        self._broken: BaseException | None = None
        self._commit_scope: anyio.CancelScope | None = None
        self._progress: dict[str | None, VolumeProgress] = {}
        #: The account-wide fan-out's committed ranges, for a sink that keeps them (``None``: it does not, and
        #: the account listing is then walked by marker to be resumable).
        self.ranges: dict[int, RangeProgress] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.destination!r})"

    @property
    def buffered(self) -> int:
        """Rows taken but not yet committed."""
        return self._pending.rows

    async def load_progress(self) -> Mapping[str | None, VolumeProgress]:
        """Open the destination and return what earlier runs of this crawl committed."""
        await self._ensure_open()
        return dict(self._progress)

    async def write(self, page: Page) -> None:
        """Buffer a page; commit when a batch is due, and wait while the buffer is full."""
        await self._ensure_open()
        while self._pending.rows >= self._max_rows:
            self.waiting += 1
            try:
                await self._commit()  # waits for the commit in progress, then commits what is pending
            finally:
                self.waiting -= 1
        self._pending.add(page)
        self.peak_buffered = max(self.peak_buffered, self._pending.rows)
        await self._maybe_commit()

    async def fail(self, volume_id: str | None, error: str) -> None:
        """Buffer the failure of a volume; it is committed with the next batch."""
        await self._ensure_open()
        # A server's text may hold anything: the checkpoint keeps it printable (no NUL) and bounded.
        self._pending.fail(volume_id, printable(error[:_MAX_ERROR])[:_MAX_ERROR])
        await self._maybe_commit()

    async def flush(self) -> None:
        """Commit everything taken so far."""
        await self._ensure_open()
        await self._commit()

    async def complete(self) -> None:
        """Commit, then mark the crawl finished (what that means is the destination's own)."""
        await self.flush()
        async with self._lock:
            self._usable()
            with anyio.CancelScope(shield=True):
                await self._finish()

    async def aclose(self) -> None:
        """Commit what is buffered (unless an earlier commit failed), then release the destination."""
        if self._closed:
            return
        try:
            if self._opened and self._broken is None:
                # Shielded: closing after the crawl was cancelled (Ctrl-C) still commits what it fetched.
                with anyio.CancelScope(shield=True):
                    await self._commit()
        finally:
            self._closed = True
            with anyio.CancelScope(shield=True):
                await self._close()

    async def __aenter__(self) -> BatchingSink:
        await self._ensure_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def progress(self, volume_id: str | None) -> VolumeProgress | None:
        """The committed progress of a volume, as of the last commit."""
        return self._progress.get(volume_id)

    async def _ensure_open(self) -> None:
        self._usable()
        if not self._opened:
            async with self._lock:
                if not self._opened:
                    self._progress = dict(await self._open())
                    self._opened = True

    def _usable(self) -> None:
        if self._closed:
            raise SinkError("the sink is closed", destination=self.destination)
        if self._broken is not None:
            raise SinkError(
                f"an earlier commit failed ({self._broken}); nothing more is committed", destination=self.destination
            )

    async def _maybe_commit(self) -> None:
        if self._lock.locked():
            return  # the commit in progress is someone else's; this batch goes with the next
        if self._pending.rows >= self._batch_rows or self._clock() - self._last_commit >= self._interval:
            await self._commit()

    async def _commit(self) -> None:
        """Commit what is pending, one commit at a time; then tell the listener which volumes it settled."""
        async with self._lock:
            self._usable()
            batch, self._pending = self._pending, Batch()
            if not batch:
                return
            self.in_flight = batch.rows
            # Shielded: a cancelled crawl still finishes (or fails) the commit it started, never half of it; only
            # ``abandon`` (a destination that stalls) cancels it, and then none of it is committed.
            scope = self._commit_scope = anyio.CancelScope(shield=True)
            try:
                with scope:
                    await self._commit_batch(batch)
            except BaseException as exc:
                if self._broken is None:
                    self._broken = exc
                raise
            finally:
                self.in_flight = 0
                self._commit_scope = None
            if scope.cancel_called:  # given up by ``abandon``, which marked the sink broken
                raise SinkError(f"a commit of {batch.rows} rows was given up", destination=self.destination)
            for volume, step in batch.steps.items():
                self._progress[volume] = step.progress(self._progress.get(volume))
            if self.ranges is not None:
                for index, range_step in batch.ranges.items():
                    self.ranges[index] = range_step.progress(self.ranges.get(index))
            self.rows += batch.rows
            self.commits += 1
            self._last_commit = self._clock()
        if self.on_commit is not None and (finished := batch.finished):
            await self.on_commit(finished)

    def abandon(self) -> int:
        """Give up the commit in progress (a destination that stalls) and every later one; return how many rows
        were taken and will not be committed. What was committed stays, and the checkpoint covers none of the
        rest, so the next run fetches those again."""
        uncommitted = self.in_flight + self._pending.rows
        if self._broken is None:
            self._broken = SinkError("given up: the destination stalled", destination=self.destination)
        if self._commit_scope is not None:
            self._commit_scope.cancel()
        return uncommitted

    async def _open(self) -> Mapping[str | None, VolumeProgress]:
        raise NotImplementedError

    async def _commit_batch(self, batch: Batch) -> None:
        raise NotImplementedError

    async def _finish(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError
