"""A fixed number of slots handed out first come, first served (the terminals' connection gate).

Like ``asyncio.Semaphore`` but cheaper on the hot path: a free slot is taken by two attribute
operations (:meth:`Slots.try_take`, which callers may inline), with no coroutine and no scan of
the waiters. A freed slot goes straight to the oldest live waiter (no barging: a newcomer never
overtakes the queue), and a waiter cancelled at the moment it was handed a slot passes it on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["Slots"]


class Slots:
    """``limit`` slots; ``active`` of them taken, the callers in ``waiters`` queued in order."""

    __slots__ = ("active", "limit", "waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody is queued; whether one was taken."""
        if self.active < self.limit and not self.waiters:
            self.active += 1
            return True
        return False

    async def take(self) -> None:
        """Wait in line for a slot (cancel the caller to give up; no slot is lost)."""
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # give() may have dropped it already
                    self.waiters.remove(waiter)
            raise

    def give(self) -> None:
        """Free a slot: to the oldest live waiter, else back to the pool."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes over directly; ``active`` unchanged
                return
        self.active -= 1
