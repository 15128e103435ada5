"""The account-wide fan-out's checkpoint: which stretches of the listing are committed, so a rerun walks the gaps.

Each fan-out page starts a *range*: a stretch of the listing, in listing order, from the id the page began with
(as fetched) to the last id committed for it, extended by the marker walk that repairs the seam after it. A
database sink commits a range's progress with the rows it covers (:class:`RangePage` carries it), so after a
kill the next run knows, for every range, where it began, where its committed part ends, whether its page was
full, and whether the seam after it was already repaired. It then checks the seams exactly as a fresh fan-out
does and walks by marker only those that are not known to join: what is missing, not the whole account.
"""

from __future__ import annotations

import dataclasses

from ._models import Page

__all__ = ["RangePage", "RangeProgress"]


class RangePage(Page, frozen=True, kw_only=True):
    """A page of the account-wide listing that also moves fan-out range ``range`` on.

    ``first`` is the id the range's fan-out page began with, as fetched (overlap included); ``full`` whether that
    page was full (a short page ends the listing); ``closed`` that the seam after the range is repaired. ``tail``
    is the page's last ids as fetched, newest first, when they differ from its snapshots' (ids another page
    delivered first are not in ``snapshots``, but the range still ends with them).
    """

    range: int
    first: str | None = None
    tail: tuple[str, ...] | None = None
    full: bool = False
    closed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RangeProgress:
    """What a sink has committed of one range: ``markers`` are its last committed ids, newest first."""

    first: str | None
    markers: tuple[str, ...]
    full: bool
    closed: bool


@dataclasses.dataclass(slots=True)
class RangeStep:
    """How one commit moves one range on (folded from its pages in arrival order)."""

    first: str | None = None
    markers: tuple[str, ...] | None = None
    full: bool = False
    closed: bool = False

    def add(self, page: RangePage) -> None:
        """Fold one page in."""
        if self.first is None:
            self.first = page.first
        if page.tail is not None:
            self.markers = page.tail
        elif page.snapshots:
            self.markers = tuple(snapshot.id for snapshot in reversed(page.snapshots))
        self.full = self.full or page.full
        self.closed = self.closed or page.closed

    def progress(self, before: RangeProgress | None) -> RangeProgress:
        """The range's progress once this step is applied to ``before``."""
        if before is None:
            return RangeProgress(self.first, self.markers or (), self.full, self.closed)
        return RangeProgress(
            before.first or self.first,
            self.markers if self.markers is not None else before.markers,
            before.full or self.full,
            before.closed or self.closed,
        )
