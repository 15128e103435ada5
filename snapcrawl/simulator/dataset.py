"""The simulator's data: deterministic synthetic snapshots, their sort orders, and churn with a change history.

::

    Dataset(volumes, seed) --generate on first use--> _Snap (sort keys + JSON bytes, encoded once)
        --ordering(volume, name, sort)--> _Ordering (cached until the listing changes) --> the server's pages
    Churn (opt-in) --after a page--> Dataset.churn(): delete passed snapshots, create new ones, each a Change
        --> mark() / existed_throughout(since=) / ever_existed(since=) / volume_of() for tests

Without churn the data is a function of ``(volumes, seed)`` alone. Churn decisions come from a random sequence the
caller seeds, so they repeat too; only the ``created_at`` of new snapshots is the wall clock ("now").
"""

from __future__ import annotations

import functools
import hashlib
import operator
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import msgspec
from msgspec.structs import force_setattr

__all__ = ["DEFAULT_SORT", "SORT_KEYS", "Change", "Churn", "Dataset", "SortSpec"]

SORT_KEYS: Final = ("created_at", "name", "size", "status", "id")
SortSpec: TypeAlias = tuple[tuple[str, bool], ...]  # (key, descending) pairs, ending with "id"
#: The API's default order, ``created_at:desc``, ties broken by id in the same direction.
DEFAULT_SORT: Final[SortSpec] = (("created_at", True), ("id", True))

_SIZES: Final = (8, 10, 16, 20, 32, 50, 64, 100, 104, 128, 200, 256, 500, 512, 1024, 2048)
_STATUSES: Final = ("creating", "deleting", "error", "error_deleting", "backing-up", "restoring")
_END: Final = 1_761_955_200  # 2025-11-01T00:00:00Z, the newest generated snapshot's day
_DAY: Final = 86_400
_CACHED_VOLUMES: Final = 16_384  # volumes (and listings) kept generated and sorted
_CACHED_ACCOUNT_LISTINGS: Final = 64  # account-wide orderings kept, each as big as the account
_SCANS_BEFORE_INDEX: Final = 8  # marker look-ups by scanning before an unchanged listing gets an index


class Churn(msgspec.Struct, frozen=True, kw_only=True):
    """How the data changes while it is listed; see :meth:`Dataset.churn`.

    After each page served, with probability ``rate`` (``busy_rate`` for a volume in ``busy_volumes``), one churn
    event happens: with probability ``marker_share`` the page's last snapshot (the client's next marker) is
    deleted, then ``deletes`` more snapshots the listing already passed (before that marker) are deleted and
    ``creates`` new ones are created (``created_at`` = now). Account-wide listings create in a busy volume when
    there are any.
    """

    rate: float = 0.1
    deletes: int = 1
    creates: int = 1
    marker_share: float = 0.25
    busy_volumes: frozenset[str] = frozenset()
    busy_rate: float = 1.0

    def __post_init__(self) -> None:
        volumes: object = self.busy_volumes
        if isinstance(volumes, str):
            raise TypeError("busy_volumes must be a collection of volume ids, not a string")
        force_setattr(self, "busy_volumes", frozenset(self.busy_volumes))
        for name in ("rate", "marker_share", "busy_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"churn {name} must be in [0, 1], not {getattr(self, name)}")
        for name in ("deletes", "creates"):
            if getattr(self, name) < 0:
                raise ValueError(f"churn {name} must be >= 0, not {getattr(self, name)}")


class Change(msgspec.Struct, frozen=True):
    """One change of the data: ``seq`` counts changes from 1; ``op`` is what happened to ``snapshot_id``."""

    seq: int
    op: Literal["create", "delete"]
    snapshot_id: str
    volume_id: str


def _uuid(raw: bytes) -> str:
    """Format 16 bytes as a random (version 4) UUID string."""
    data = bytearray(raw)
    data[6] = (data[6] & 0x0F) | 0x40
    data[8] = (data[8] & 0x3F) | 0x80
    h = data.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


class _Snap:
    """One snapshot: its sort keys and its JSON, encoded once."""

    __slots__ = ("body", "created", "id", "name", "size", "status")

    def __init__(self, record: dict[str, Any], created: str) -> None:
        self.id: str = record["id"]
        self.name: str | None = record["name"]
        self.size: int = record["size"]
        self.status: str | None = record["status"]
        self.created = created  # the timestamp without its zone: naive times are UTC, so this sorts right
        self.body = msgspec.json.encode(record)


def _nullable(value: str | None) -> tuple[bool, str]:
    return (value is not None, value or "")  # None first when ascending


_SORT_KEY_FUNCS: Final[Mapping[str, Callable[[_Snap], Any]]] = {
    "created_at": operator.attrgetter("created"),
    "name": lambda snap: _nullable(snap.name),
    "size": operator.attrgetter("size"),
    "status": lambda snap: _nullable(snap.status),
    "id": operator.attrgetter("id"),
}


def _precedes(first: _Snap, second: _Snap, sort: SortSpec) -> bool:
    """Whether ``first`` comes before ``second`` in ``sort`` order."""
    for key, descending in sort:
        func = _SORT_KEY_FUNCS[key]
        one, other = func(first), func(second)
        if one != other:
            return bool(one > other) if descending else bool(one < other)
    return False


class _Ordering:
    """The matching snapshots of one listing in one sort order; churn patches it in place."""

    __slots__ = ("_index", "_scans", "bodies", "ids", "snaps")

    def __init__(self, snaps: list[_Snap]) -> None:
        self.snaps = snaps
        self.bodies = [snap.body for snap in snaps]
        self.ids = [snap.id for snap in snaps]
        self._index: dict[str, int] | None = None
        self._scans = 0

    def _changed(self) -> None:
        self._index, self._scans = None, 0

    def remove(self, snapshot_id: str) -> None:
        """Take a deleted snapshot out, if it is listed here."""
        if self._index is not None:
            pos = self._index.get(snapshot_id, -1)
        else:  # a scan in C beats building the index that the next change would throw away
            pos = self.ids.index(snapshot_id) if snapshot_id in self.ids else -1
        if pos >= 0:
            del self.snaps[pos], self.bodies[pos], self.ids[pos]
            self._changed()

    def insert(self, snap: _Snap, sort: SortSpec) -> None:
        """Put a created snapshot in its place: a binary search, not a sort of the whole account."""
        low, high = 0, len(self.snaps)
        while low < high:
            middle = (low + high) // 2
            if _precedes(self.snaps[middle], snap, sort):
                low = middle + 1
            else:
                high = middle
        self.snaps.insert(low, snap)
        self.bodies.insert(low, snap.body)
        self.ids.insert(low, snap.id)
        self._changed()

    def after(self, marker: str) -> int | None:
        """The position right after ``marker``, or ``None`` if it is not in this listing."""
        if self._index is None:
            # Scans (in C) until the listing has stayed unchanged for a while, then an index: churn resets it.
            self._scans += 1
            if len(self.ids) <= 64 or self._scans <= _SCANS_BEFORE_INDEX:
                return self.ids.index(marker) + 1 if marker in self.ids else None
            self._index = dict(zip(self.ids, range(len(self.ids)), strict=True))
        pos = self._index.get(marker)
        return None if pos is None else pos + 1


def _sorted(snaps: Iterable[_Snap], name: str | None, sort: SortSpec) -> _Ordering:
    chosen = list(snaps) if name is None else [snap for snap in snaps if snap.name == name]
    for key, descending in reversed(sort):  # stable sorts, least significant key first
        chosen.sort(key=_SORT_KEY_FUNCS[key], reverse=descending)
    return _Ordering(chosen)


class Dataset:
    """Synthetic snapshots of ``volumes`` volumes, a function of ``(volumes, seed)`` until churn changes them.

    Volume ``i`` depends on ``(seed, i)`` alone and is generated on first use, then cached, so large datasets
    cost only what is read. Most volumes have 0-5 snapshots, some 6-40, about 2% between 100 and 400.

    Every change (see :class:`Churn`) gets the next sequence number; :meth:`mark` reads it, and
    :meth:`existed_throughout` / :meth:`ever_existed` answer what a consistent crawl since that mark must and may
    hold. Safe to query from another thread while the server changes the data.
    """

    def __init__(self, volumes: int, seed: int = 0) -> None:
        if volumes < 0:
            raise ValueError(f"volumes must be >= 0, not {volumes}")
        self.volumes = volumes
        self.seed = seed
        self.volume_ids: list[str] = []
        self._counts: list[int] = []
        self._seeds: list[int] = []
        for index in range(volumes):
            digest = hashlib.blake2b(f"snapcrawl/{seed}/{index}".encode(), digest_size=32).digest()
            self.volume_ids.append(_uuid(digest[:16]))
            bucket = int.from_bytes(digest[16:20]) / 2**32
            pick = int.from_bytes(digest[20:24])
            if bucket < 0.02:
                count = 100 + pick % 301
            elif bucket < 0.15:
                count = 6 + pick % 35
            else:
                count = pick % 6
            self._counts.append(count)
            self._seeds.append(int.from_bytes(digest[24:]))
        self._positions = {volume_id: index for index, volume_id in enumerate(self.volume_ids)}
        self._base_total = sum(self._counts)
        # Bounded so that crawling 100,000 volumes does not keep a million snapshots; regenerating is exact.
        self._volume = functools.lru_cache(maxsize=_CACHED_VOLUMES)(self._generate)
        self._volume_ordering = functools.lru_cache(maxsize=_CACHED_VOLUMES)(self._build_volume_ordering)
        # Account-wide orderings are as big as the account: patched on each change rather than sorted again.
        self._account_orderings: dict[tuple[str | None, SortSpec], _Ordering] = {}
        # Churn: what changed, on top of the generated data (which is regenerated exactly when evicted).
        self._lock = threading.RLock()
        self._seq = 0
        self._changes: list[Change] = []
        self._deleted: dict[str, int] = {}  # snapshot id -> seq of its deletion
        self._added: dict[int, list[_Snap]] = {}  # volume index -> snapshots created by churn, oldest first
        self._born: dict[str, int] = {}  # churn-created snapshot id -> seq of its creation
        self._owner: dict[str, str] = {}  # snapshot id -> volume id, filled for churned and on demand
        self._versions: dict[int, int] = {}  # volume index -> seq of its last change
        self._delta: dict[int, int] = {}  # volume index -> snapshots created minus deleted

    def __repr__(self) -> str:
        return f"Dataset(volumes={self.volumes}, seed={self.seed})"

    @property
    def total(self) -> int:
        """The number of snapshots in the whole account now."""
        return self._base_total + sum(self._delta.values())

    def count(self, volume_id: str | None = None) -> int:
        """How many snapshots ``volume_id`` has now (0 if unknown); the whole account's for ``None``."""
        if volume_id is None:
            return self.total
        index = self._positions.get(volume_id)
        return 0 if index is None else self._counts[index] + self._delta.get(index, 0)

    def snapshots(self, volume_id: str | None = None) -> list[dict[str, Any]]:
        """Fresh copies of the snapshots of ``volume_id`` (whole account for ``None``) now, in creation order.

        They are decoded from the very bytes the server sends.
        """
        with self._lock:
            return [msgspec.json.decode(snap.body) for snap in self._snaps(volume_id)]

    def ordering(self, volume_id: str | None, name: str | None, sort: SortSpec) -> _Ordering:
        """The listing of ``volume_id`` (account-wide for ``None``) filtered by ``name``, as it is now."""
        with self._lock:
            if volume_id is not None:
                index = self._positions.get(volume_id)
                return self._volume_ordering(index, name, sort, 0 if index is None else self._versions.get(index, 0))
            key = (name, sort)
            ordering = self._account_orderings.get(key)
            if ordering is None:
                ordering = _sorted(self._snaps(None), name, sort)
                if len(self._account_orderings) >= _CACHED_ACCOUNT_LISTINGS:
                    self._account_orderings.pop(next(iter(self._account_orderings)))
                self._account_orderings[key] = ordering
            return ordering

    # -- change history ----------------------------------------------------------------------------------------

    def mark(self) -> int:
        """The current change sequence number: pass it as ``since`` to the history queries after a crawl."""
        return self._seq

    def existed_throughout(self, since: int, volume_id: str | None = None) -> set[str]:
        """Ids of the snapshots (of ``volume_id``, or all) that existed at ``since`` and still exist now.

        A crawl that ran from ``since`` until now must have listed each of them.
        """
        with self._lock:
            return {snap.id for snap in self._snaps(volume_id) if self._born.get(snap.id, 0) <= since}

    def ever_existed(self, since: int, volume_id: str | None = None) -> set[str]:
        """Ids of the snapshots (of ``volume_id``, or all) that existed at any moment from ``since`` until now.

        A crawl that ran from ``since`` until now may have listed only these.
        """
        with self._lock:
            ids = {snap.id for snap in self._snaps(volume_id, alive_only=False)}
            return {snap_id for snap_id in ids if self._deleted.get(snap_id, since + 1) > since}

    def changes(self, since: int = 0) -> list[Change]:
        """The changes after ``since``, oldest first."""
        with self._lock:
            return self._changes[since:]  # seq n is at index n - 1

    def volume_of(self, snapshot_id: str) -> str | None:
        """The volume a snapshot (existing or deleted) belongs to; ``None`` if there never was one by that id."""
        with self._lock:
            if snapshot_id not in self._owner and len(self._owner) < self._base_total + len(self._born):
                for index, volume_id in enumerate(self.volume_ids):
                    for snap in self._volume(index):
                        self._owner[snap.id] = volume_id
            return self._owner.get(snapshot_id)

    # -- churn -------------------------------------------------------------------------------------------------

    def churn(
        self,
        churn: Churn,
        rng: random.Random,
        volume_id: str | None,
        listing: Sequence[str],
        end: int,
        *,
        now: float | None = None,
    ) -> list[Change]:
        """Maybe change the data after a page of a listing: delete some of what it passed, create new snapshots.

        ``listing`` holds the listing's ids in its order and the page just served ends before ``end``, so
        ``listing[end - 1]`` is the client's next marker. ``now`` (Unix time, default the clock) becomes the new
        snapshots' ``created_at``. Returns the changes made.
        """
        busy = volume_id is not None and volume_id in churn.busy_volumes
        if end <= 0 or rng.random() >= (churn.busy_rate if busy else churn.rate):
            return []
        doomed: list[str] = []
        if rng.random() < churn.marker_share:
            doomed.append(listing[end - 1])
        for position in rng.sample(range(end - 1), min(churn.deletes, end - 1)):  # the marker: marker_share only
            if listing[position] not in doomed:
                doomed.append(listing[position])
        if volume_id is not None:
            homes = [volume_id] * churn.creates
        else:
            pool = sorted(churn.busy_volumes & self._positions.keys()) or self.volume_ids
            homes = [rng.choice(pool) for _ in range(churn.creates)] if pool else []
        moment = int(time.time() if now is None else now)
        with self._lock:
            made = [self._delete(snap_id) for snap_id in doomed if snap_id not in self._deleted]
            made += [self._create(home, rng, moment) for home in homes if home in self._positions]
            return [change for change in made if change is not None]

    def _record(self, op: Literal["create", "delete"], snapshot_id: str, index: int, delta: int) -> Change:
        self._seq += 1
        change = Change(self._seq, op, snapshot_id, self.volume_ids[index])
        self._changes.append(change)
        self._versions[index] = self._seq
        self._delta[index] = self._delta.get(index, 0) + delta
        return change

    def _delete(self, snapshot_id: str) -> Change | None:
        volume_id = self.volume_of(snapshot_id)
        if volume_id is None:
            return None
        self._deleted[snapshot_id] = self._seq + 1
        for ordering in self._account_orderings.values():
            ordering.remove(snapshot_id)
        return self._record("delete", snapshot_id, self._positions[volume_id], -1)

    def _create(self, volume_id: str, rng: random.Random, moment: int) -> Change:
        index = self._positions[volume_id]
        generated = self._volume(index)
        size = generated[0].size if generated else rng.choice(_SIZES)
        number = self._counts[index] + len(self._added.get(index, ())) + 1
        owner = f"{rng.getrandbits(128):032x}"
        # The snapshot's own draws (its id above all) come from the change's sequence number, not from the churn
        # generator, which restarts whenever the faults change: an id is never made twice in a dataset's life.
        unique = random.Random(f"{self.seed}/created/{self._seq + 1}")
        snap = _make_snap(unique, volume_id, number=number, when=moment, size=size, owner=owner)
        self._added.setdefault(index, []).append(snap)
        self._born[snap.id] = self._seq + 1
        self._owner[snap.id] = volume_id
        for (name, sort), ordering in self._account_orderings.items():
            if name is None or snap.name == name:
                ordering.insert(snap, sort)
        return self._record("create", snap.id, index, 1)

    # -- generation --------------------------------------------------------------------------------------------

    def _snaps(self, volume_id: str | None, *, alive_only: bool = True) -> list[_Snap]:
        if volume_id is None:
            return [snap for index in range(self.volumes) for snap in self._volume_snaps(index, alive_only)]
        index = self._positions.get(volume_id)
        return [] if index is None else self._volume_snaps(index, alive_only)

    def _volume_snaps(self, index: int, alive_only: bool) -> list[_Snap]:
        generated = self._volume(index)
        if index not in self._versions:
            return generated
        snaps = generated + self._added.get(index, [])
        deleted = self._deleted
        return [snap for snap in snaps if snap.id not in deleted] if alive_only else snaps

    def _build_volume_ordering(self, index: int | None, name: str | None, sort: SortSpec, version: int) -> _Ordering:
        del version  # part of the cache key only: a changed volume is sorted afresh
        return _sorted([] if index is None else self._volume_snaps(index, alive_only=True), name, sort)

    def _generate(self, index: int) -> list[_Snap]:
        rng = random.Random(self._seeds[index])
        volume_id = self.volume_ids[index]
        size = rng.choice(_SIZES)
        owner = f"{rng.getrandbits(128):032x}"
        scheduled = rng.random() < 0.4  # a backup policy: every few days at exactly 09:00:00 UTC
        # Walk back in time from the newest snapshot, then list them oldest first.
        when = _END - rng.randrange(400) * _DAY - (15 * 3600 if scheduled else rng.randrange(_DAY))
        times = []
        for number in range(self._counts[index]):
            if number and rng.random() >= 0.05:  # else: the same second as the one after it
                when -= _DAY * rng.randint(1, 3) if scheduled else rng.randrange(600, 2 * _DAY)
            times.append(when)
        return [
            _make_snap(rng, volume_id, number=number, when=when, size=size, owner=owner)
            for number, when in enumerate(reversed(times), start=1)
        ]


def _make_snap(rng: random.Random, volume_id: str, *, number: int, when: int, size: int, owner: str) -> _Snap:
    """One snapshot of ``volume_id`` created at ``when`` (Unix seconds); the draws from ``rng`` are fixed."""
    created = _iso(when)
    record = {
        "created_at": created if rng.random() < 0.05 else created + "Z",
        "description": _description(rng),
        "id": _uuid(rng.getrandbits(128).to_bytes(16)),
        "metadata": _metadata(rng),
        "name": _name(rng, number, created, volume_id),
        "size": size,
        "status": _status(rng),
        "updated_at": None if rng.random() < 0.3 else _iso(when + rng.randrange(60, 3 * _DAY)) + "Z",
        "user_id": None if rng.random() < 0.1 else owner,
        "volume_id": volume_id,
    }
    return _Snap(record, created)


def _name(rng: random.Random, number: int, created: str, volume_id: str) -> str | None:
    roll = rng.random()
    if roll < 0.10:
        return None
    if roll < 0.55:
        return f"snapshot-{number}"
    if roll < 0.65:
        return f"스냅샷-{number}"
    if roll < 0.75:
        return f"daily backup {created[:10]}"
    choices = ("backup ü/ñ", "weekly & monthly + 50% = ?#", "📦 archive", " padded  name ", f"vol-{volume_id[:8]}")
    return choices[int((roll - 0.75) / 0.05)]


def _description(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.4:
        return None
    if roll < 0.7:
        return "Created by backup policy"
    if roll < 0.8:
        return "수동 백업 (manual)"
    return "" if roll < 0.9 else 'line one\nline "two"\t\\ end'


def _metadata(rng: random.Random) -> dict[str, str] | str | None:
    roll = rng.random()
    if roll < 0.5:
        return {"policy": rng.choice(("daily", "weekly", "manual")), "retention_days": rng.choice(("7", "30"))}
    if roll < 0.6:
        return {}
    return "Metadata" if roll < 0.8 else None


def _status(rng: random.Random) -> str:
    roll = rng.random()
    return "available" if roll < 0.85 else _STATUSES[min(int((roll - 0.85) / 0.025), len(_STATUSES) - 1)]
