"""Pure pagination logic: which page to ask for next, and when to stop. No I/O."""

from __future__ import annotations

from typing import Literal

from ._exceptions import PaginationError
from ._models import SnapshotPage
from ._signing import query_escape

__all__ = ["PageCursor", "Paging"]

Paging = Literal["marker", "offset"]


class PageCursor:
    """Walks the pages of one listing (one volume, or the whole account).

    ``params()`` gives the next request's query; ``advance(page)`` takes its answer and says whether more
    pages follow. A listing ends on an empty page, when ``count`` snapshots have arrived, or, when the server
    sent no count, on a short page. A page that repeats the previous one raises :class:`PaginationError`.
    """

    __slots__ = (
        "_head",
        "_last_first_id",
        "_name",
        "_tail",
        "count",
        "marker",
        "name",
        "offset",
        "page",
        "page_size",
        "paging",
        "seen",
        "sort",
        "volume_id",
        "with_count",
    )

    def __init__(
        self,
        *,
        volume_id: str | None,
        page_size: int,
        paging: Paging = "marker",
        name: str | None = None,
        sort: str | None = None,
        with_count: bool = True,
        marker: str | None = None,
        offset: int = 0,
    ) -> None:
        self.volume_id = volume_id
        self.page_size = page_size
        self.paging = paging
        self.marker = marker
        self.offset = offset
        self.page = 1
        self.seen = 0
        self.count: int | None = None
        self._last_first_id: str | None = None
        self.name = name
        self.sort = sort
        self.with_count = with_count
        # The encoded query around the one parameter that changes: keys sort as limit, marker, name, offset,
        # sort, volume_id, with_count, so a page's query is one join, not a sort and escape of everything.
        self._head = f"limit={page_size}"
        self._name = "" if name is None else f"&name={query_escape(name)}"
        sort_part = "" if sort is None else f"&sort={query_escape(sort)}"
        volume_part = "" if volume_id is None else f"&volume_id={query_escape(volume_id)}"
        self._tail = f"{sort_part}{volume_part}&with_count={'true' if with_count else 'false'}"

    def params(self) -> dict[str, str]:
        """The parameters of the next page."""
        params = {"limit": str(self.page_size), "with_count": "true" if self.with_count else "false"}
        for key, value in (("volume_id", self.volume_id), ("name", self.name), ("sort", self.sort)):
            if value is not None:
                params[key] = value
        if self.paging == "marker":
            if self.marker is not None:
                params["marker"] = self.marker
        elif self.offset:
            params["offset"] = str(self.offset)
        return params

    def query(self) -> str:
        """The encoded query of the next page, exactly as ``encode_query(self.params())``."""
        if self.paging == "marker":
            marker = "" if self.marker is None else f"&marker={query_escape(self.marker)}"
            return f"{self._head}{marker}{self._name}{self._tail}"
        offset = f"&offset={self.offset}" if self.offset else ""
        return f"{self._head}{self._name}{offset}{self._tail}"

    def advance(self, page: SnapshotPage) -> bool:
        """Account for ``page``; return whether another page should be fetched."""
        snapshots = page.snapshots
        if page.count is not None:
            self.count = page.count
        if not snapshots:
            return False
        first_id, last_id = snapshots[0].id, snapshots[-1].id
        if first_id == self._last_first_id or (self.paging == "marker" and last_id == self.marker):
            raise PaginationError(
                f"the server returned the same page again (first id {first_id!r}); stopping instead of looping",
                volume_id=self.volume_id,
                page=self.page,
            )
        self._last_first_id = first_id
        self.marker = last_id
        self.offset += len(snapshots)
        self.seen += len(snapshots)
        self.page += 1
        if self.count is not None:
            return self.seen < self.count
        return len(snapshots) >= self.page_size
