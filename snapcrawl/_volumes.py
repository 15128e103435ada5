"""The volumes strategy: workers over volume ids, each volume walked by marker from where earlier runs left it.

Ids come from any iterable, consumed lazily: a collection is shared by the workers as one iterator, anything else
is fed by a task (a synchronous iterable read in a thread, as it may block). Duplicates are crawled once.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator
from typing import Final

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from ._exceptions import ConfigError
from ._ids import ThreadedIds
from ._run import CrawlRun
from ._tasks import check_none_dropped
from ._text import has_controls, printable, shorten

__all__ = ["MAX_VOLUME_ID_LENGTH", "check_volume_id", "check_volume_ids", "crawl_volumes"]

#: Longer ids are rejected as invalid rather than sent (real ids are 36-character UUIDs).
MAX_VOLUME_ID_LENGTH: Final = 255
#: Ids read ahead of the crawl from a synchronous iterable, in a thread (it may block: a pipe, a slow generator).
ID_BATCH: Final = 256
#: How long the crawl waits for the next volume id before it flushes its sink (and again, while it waits).
IDLE_FLUSH: Final = 0.2


async def crawl_volumes(run: CrawlRun, volume_ids: Iterable[object] | AsyncIterable[object]) -> None:
    """Crawl every volume of ``volume_ids`` with ``run``'s workers; duplicates once, invalid ids failed unsent."""
    await _VolumeCrawl(run).crawl(volume_ids)


class _VolumeCrawl:
    """One crawl's volume ids: which were seen, and the workers that walk them."""

    __slots__ = ("_seen", "run")

    def __init__(self, run: CrawlRun) -> None:
        self.run = run
        self._seen: set[str] = set()

    async def crawl(self, volume_ids: Iterable[object] | AsyncIterable[object]) -> None:
        check_volume_ids(volume_ids)
        with contextlib.ExitStack() as streams:  # closed however the crawl ends
            async with anyio.create_task_group() as tg:
                ids: Iterator[object] | _Feed
                if isinstance(volume_ids, AsyncIterable):
                    ids = streams.enter_context(self._feed(tg, self._from_async(volume_ids)))
                elif isinstance(volume_ids, Collection):  # in memory: workers share the iterator, no feeder task
                    ids = self._unique(iter(volume_ids))
                else:  # may block (a pipe, a slow generator): read in a thread, handed over as they arrive;
                    # the thread, the feeder and the workers' buffer each hold up to half a batch ahead
                    reader = streams.enter_context(ThreadedIds(iter(volume_ids), ahead=ID_BATCH // 2))
                    ids = streams.enter_context(self._feed(tg, reader.batches()))
                for _ in range(self.run.settings.concurrency):
                    tg.start_soon(self._worker, ids)
            check_none_dropped(tg, "a volume worker")

    def _first_time(self, volume_id: object) -> bool:
        """Whether this id is new to the crawl (then it is counted); duplicates are crawled once."""
        key = volume_id if isinstance(volume_id, str) else repr(volume_id)
        if key in self._seen:
            return False
        self._seen.add(key)
        self.run.stats.volumes_seen += 1
        return True

    def _unique(self, volume_ids: Iterator[object]) -> Iterator[object]:
        return (volume_id for volume_id in volume_ids if self._first_time(volume_id))

    @staticmethod
    async def _from_async(volume_ids: AsyncIterable[object]) -> AsyncIterator[list[object]]:
        async for volume_id in volume_ids:
            yield [volume_id]

    def _feed(self, tg: TaskGroup, batches: AsyncIterator[list[object]]) -> _Feed:
        # Unbuffered: the feeder pulls the next batch only once a worker has taken the previous one.
        send, receive = anyio.create_memory_object_stream[list[object]](0)

        async def feed() -> None:
            async with send:
                async for batch in batches:
                    if fresh := [volume_id for volume_id in batch if self._first_time(volume_id)]:
                        await send.send(fresh)

        tg.start_soon(feed)
        return _Feed(receive, on_idle=sink.flush if (sink := self.run.sink) is not None else None)

    async def _worker(self, ids: Iterator[object] | _Feed) -> None:
        """Crawl volumes one after another, each page after page."""
        shared = ids if isinstance(ids, Iterator) else None
        feed = ids if isinstance(ids, _Feed) else None
        while True:
            if shared is not None:
                volume_id = next(shared, _END)
            else:
                assert feed is not None  # noqa: S101 - one of the two is set
                volume_id = await feed.next()
            if volume_id is _END:
                return
            if (problem := check_volume_id(volume_id)) is not None:
                await self.run.fail_listing(failure_key(volume_id), problem, 0)
                continue
            assert isinstance(volume_id, str)  # noqa: S101 - checked just above
            await self.run.walk_listing(volume_id)


_END: Final = object()


class _Feed:
    """The receiving end of a feeder task: the next id, or ``_END``.

    Ids arrive a batch at a time into a buffer the workers share, so a worker takes the next id without a trip
    through the event loop; when the buffer is empty, one worker waits for the next batch and the others wait
    for it (two stream checkpoints per id cost about a fifth of the crawl's CPU when each volume is one page).
    """

    __slots__ = ("_ended", "_on_idle", "_ready", "_receive", "_refill")

    def __init__(
        self,
        receive: MemoryObjectReceiveStream[list[object]],
        *,
        on_idle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._receive = receive
        self._on_idle = on_idle
        self._ready: collections.deque[object] = collections.deque()
        self._refill = anyio.Lock(fast_acquire=True)
        self._ended = False

    def __enter__(self) -> _Feed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._receive.close()

    async def next(self) -> object:
        ready = self._ready
        while not ready:
            if self._ended:
                return _END
            async with self._refill:
                if ready or self._ended:
                    continue  # another worker refilled the buffer (or saw the end) meanwhile
                try:
                    ready.extend(await self._receive_batch())
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    self._ended = True
        return ready.popleft()

    async def _receive_batch(self) -> list[object]:
        """The next batch; while none comes (a producer that pauses, such as a person typing ids), the sink is
        flushed every :data:`IDLE_FLUSH` seconds, so that what was crawled is written (to stdout) without waiting."""
        try:
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            if self._on_idle is None:
                return await self._receive.receive()
        while True:
            with anyio.move_on_after(IDLE_FLUSH):
                return await self._receive.receive()
            await self._on_idle()


def check_volume_ids(volume_ids: object) -> None:
    """Refuse a single string where an iterable of ids belongs: iterating it would crawl one volume per character."""
    if isinstance(volume_ids, str | bytes):
        raise ConfigError("volume_ids must be an iterable of volume ids, not a single string")


def check_volume_id(volume_id: object) -> ConfigError | None:
    """Why ``volume_id`` cannot be sent, or ``None`` when it can (checked before any request)."""
    if not isinstance(volume_id, str):
        return ConfigError(
            f"invalid volume id {shorten(repr(volume_id))}: it must be a string, not {type(volume_id).__name__}"
        )
    if not volume_id.strip():
        return ConfigError(f"invalid volume id {volume_id!r}: it must be a non-empty string")
    if len(volume_id) > MAX_VOLUME_ID_LENGTH:
        return ConfigError(f"invalid volume id {shorten(volume_id, 40)}: more than {MAX_VOLUME_ID_LENGTH} characters")
    if has_controls(volume_id):
        return ConfigError(f"invalid volume id {shorten(volume_id)}: it holds control characters")
    return None


def failure_key(volume_id: object) -> str:
    """What an invalid volume id is recorded as: bounded and printable, so a checkpoint can always hold it."""
    text = volume_id if isinstance(volume_id, str) else repr(volume_id)
    if len(text) <= MAX_VOLUME_ID_LENGTH and not has_controls(text):
        return text
    cut = printable(text[:64])
    return cut if len(text) <= 64 else f"{cut}... ({len(text)} characters)"
