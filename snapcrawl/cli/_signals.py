"""How a command stops on SIGINT or SIGTERM: note the signal, cancel the work, and let it close cleanly."""

from __future__ import annotations

import signal

import anyio

__all__ = ["stop_on_signal"]


async def stop_on_signal(scope: anyio.CancelScope, caught: list[int]) -> None:
    """Wait for SIGINT or SIGTERM, append it to ``caught`` and cancel ``scope``, so that the command's cleanup runs
    (commit, release) and its exit status can say which signal stopped it."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            caught.append(signum)
            scope.cancel()
            return
