"""The stream users iterate: one crawl's snapshots (or pages) through a bounded memory stream.

The crawl runs in a task group the stream owns while its ``async with`` block is open; a slow consumer slows the
crawl's workers instead of growing memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._exceptions import ConfigError
from ._models import Page, Snapshot, VolumeFailure
from ._run import CrawlRun, Deliver, Strategy
from ._stats import CrawlStats

__all__ = ["CrawlStream"]


class CrawlStream(AsyncIterator[Snapshot]):
    """The snapshots of one crawl, as they arrive; the crawl runs while the ``async with`` block is open.

    ``async with crawler.crawl(ids) as stream: async for snapshot in stream: ...``. Leaving the block, however
    it is left, cancels the crawl and waits for its tasks; ``pages()`` yields whole pages instead of snapshots.
    ``stats`` and ``failures`` are this crawl's own. An :class:`AuthError` (or a query the server rejects for
    every volume, as a :class:`ConfigError`) is raised from the iteration once what was fetched was yielded.
    """

    def __init__(
        self, start: Callable[[Deliver], CrawlRun], strategy: Strategy, *, scope: str, buffer_pages: int
    ) -> None:
        self._run = start(self._deliver)  # the run hands its pages to this stream's send end
        self._strategy = strategy
        self._scope = scope
        self._buffer = buffer_pages
        self._stack: AsyncExitStack | None = None
        self._send: MemoryObjectSendStream[Page] | None = None
        self._receive: MemoryObjectReceiveStream[Page] | None = None
        self._page: list[Snapshot] = []
        self._current = Page(None, 0, [], last=False)
        self._index = 0

    @property
    def stats(self) -> CrawlStats:
        """This crawl's counts so far."""
        return self._run.stats

    @property
    def failures(self) -> list[VolumeFailure]:
        """The volumes this crawl gave up on so far."""
        return self._run.failures

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise ConfigError("a crawl stream can be entered once")
        send, receive = anyio.create_memory_object_stream[Page](self._buffer)
        self._send, self._receive = send, receive
        stack = AsyncExitStack()
        stack.enter_context(receive)
        task_group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(task_group.cancel_scope.cancel)  # leaving the block ends the crawl
        self._stack = stack

        async def produce(send: MemoryObjectSendStream[Page]) -> None:
            with send, contextlib.suppress(anyio.BrokenResourceError):  # the consumer left: the crawl ends
                await self._run.run(self._strategy, scope=self._scope)

        task_group.start_soon(produce, send)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        try:
            return await stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The task group wraps the body's own exception; let the caller see it as it was raised.
            if exc is not None and group.exceptions == (exc,):
                return False
            raise

    async def _deliver(self, page: Page) -> None:
        send = self._send
        if send is None:
            raise ConfigError("the crawl stream was not entered")
        try:
            send.send_nowait(page)
        except anyio.WouldBlock:
            await send.send(page)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Snapshot:
        while self._index >= len(self._page):
            self._current = await self._next_page()
            self._page = self._current.snapshots
            self._index = 0
        self._index += 1
        return self._page[self._index - 1]

    async def pages(self) -> AsyncIterator[Page]:
        """Yield the rest of the crawl a page at a time, with its volume (cheaper for consumers that batch)."""
        if self._index < len(self._page):
            current, rest, self._page = self._current, self._page[self._index :], []
            yield Page(current.volume_id, current.number, rest, current.last)
        while True:
            try:
                page = await self._next_page()
            except StopAsyncIteration:
                return
            yield page

    async def _next_page(self) -> Page:
        receive = self._receive
        if receive is None or self._stack is None:
            raise ConfigError("iterate a crawl inside 'async with crawler.crawl(...) as stream:'")
        try:
            try:
                return receive.receive_nowait()
            except anyio.WouldBlock:
                return await receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if (fatal := self._run.fatal) is not None:
                self._run.fatal = None
                raise fatal from None
            raise StopAsyncIteration from None
