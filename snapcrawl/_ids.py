"""Volume ids from a synchronous iterable that may block (a pipe, a slow generator), handed over as they arrive.

Pulling a fixed number of ids at a time in a worker thread waits for that many: one id typed by hand is never
crawled, and a cancelled crawl waits for the thread until the producer sends more or closes. Here one daemon
thread of its own iterates the ids and the crawl takes whatever has arrived, a batch at a time: an id is crawled
as soon as it is read, a fast producer still hands over large batches, and cancelling the crawl never waits for
the producer (the thread ends at its next id, or with the process).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = ["ThreadedIds"]


class ThreadedIds:
    """Reads ``ids`` in a daemon thread, at most ``ahead`` ids ahead of the crawl; use with ``with``.

    :meth:`batches` yields the ids read so far, as lists. An exception raised by the iterable is raised there.
    Leaving the ``with`` block stops the thread at its next id (it may be blocked reading until then).
    """

    def __init__(self, ids: Iterator[object], *, ahead: int = 256) -> None:
        self._ids = ids
        self._ahead = ahead
        self._cond = threading.Condition()
        self._ready: list[object] = []
        self._ended = False
        self._closed = False
        self._error: BaseException | None = None
        self._waiting: anyio.Event | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None

    def __enter__(self) -> ThreadedIds:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    async def batches(self) -> AsyncIterator[list[object]]:
        """The ids, a batch of those that have arrived at a time, until the iterable ends."""
        self._token = anyio.lowlevel.current_token()
        threading.Thread(target=self._read, name="snapcrawl volume ids", daemon=True).start()
        while True:
            with self._cond:
                batch, self._ready = self._ready, []
                if batch:
                    self._cond.notify_all()  # room again for the reader
                elif self._error is not None:
                    raise self._error
                elif self._ended:
                    return
                else:
                    self._waiting = waiting = anyio.Event()
            if batch:
                yield batch
            else:
                await waiting.wait()

    def _read(self) -> None:
        """The thread: iterate the ids, wait while ``ahead`` are unclaimed, wake the crawl when it waits."""
        try:
            for volume_id in self._ids:
                with self._cond:
                    while len(self._ready) >= self._ahead and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    self._ready.append(volume_id)
                self._wake()
        except BaseException as exc:
            with self._cond:
                self._error = exc
        finally:
            with self._cond:
                self._ended = True
            self._wake()

    def _wake(self) -> None:
        with self._cond:
            waiting, self._waiting = self._waiting, None
            if waiting is None or self._closed:
                return
        with contextlib.suppress(Exception):  # the event loop is gone: nobody is waiting any more
            anyio.from_thread.run_sync(waiting.set, token=self._token)
