"""One key's token bucket for ``RateLimiter``: GCRA state, the FIFO queue and its dispatcher.

The bucket is kept as a theoretical arrival time (GCRA, the virtual-scheduling form of a token
bucket): ``tat`` says when the bucket will be empty, so admitting a request and telling a
newcomer when its turn would come are O(1). Callers that must wait join a FIFO queue; one
dispatcher task per busy key sleeps until the next token is due and hands it to the oldest
live waiter, so nobody is woken just to find no token (no thundering herd, no polling).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ._rate_control import CubicRate

__all__ = ["Bucket"]

Sleep = Callable[[float], Awaitable[Any]]

_BURST_SECONDS = 0.05  # default burst: 50 ms worth of the rate, at least one request
_WEIGHT = 0.2  # EWMA weight of the newest sample (call duration, timer lateness)
_LATE_FORGIVEN = 0.001  # the dispatcher's timer may fire this late without slowing the rate
_HEADROOM = 2.0  # a waiter's turn must leave this many typical call durations to its deadline


class _Waiter:
    __slots__ = ("deadline", "future", "latest")

    def __init__(self, future: asyncio.Future[float | None], deadline: float, latest: float):
        self.future = future  # result None: go; a float: refused, seconds until a token
        self.deadline = deadline  # the request's deadline: its turn must come well before it
        self.latest = latest  # arrival + max_wait: its turn may come at the latest then


class Bucket:
    """GCRA state, the FIFO queue and the adaptive control (if any) of one key."""

    __slots__ = (
        "burst",
        "control",
        "dispatcher",
        "interval",
        "lag",
        "latency",
        "live",
        "pause_until",
        "tat",
        "tolerance",
        "waiters",
    )

    def __init__(self, rate: float | None, burst: float | None, control: CubicRate | None):
        self.burst = burst  # None: 50 ms worth of the rate (follows an adaptive rate)
        self.control = control
        self.dispatcher: asyncio.Task[None] | None = None
        self.waiters: deque[_Waiter] = deque()
        self.live = 0  # waiters whose future is not done
        self.latency = 0.0  # EWMA of the time the rest of the chain took, seconds
        self.lag = 0.0  # EWMA of how late the dispatcher's timer fired (a busy loop), seconds
        self.pause_until = -math.inf
        self.tat = -math.inf  # theoretical arrival time: when the bucket would be empty
        self.interval = 0.0  # seconds per request; 0: unlimited
        self.tolerance = 0.0  # (burst - 1) * interval
        self.set_rate(rate, -math.inf)

    @property
    def rate(self) -> float | None:
        """Requests per second now (``None``: unlimited)."""
        return 1.0 / self.interval if self.interval else None

    def set_rate(self, rate: float | None, now: float) -> None:
        """Change the rate; the backlog already granted is re-priced at the new rate."""
        if rate is None:
            self.interval = self.tolerance = 0.0
            return
        interval = 1.0 / rate
        if self.interval and self.tat > now:
            self.tat = now + (self.tat - now) * interval / self.interval
        self.interval = interval
        burst = self.burst if self.burst is not None else max(1.0, rate * _BURST_SECONDS)
        self.tolerance = (burst - 1.0) * interval

    def pause(self, until: float) -> bool:
        """No request before ``until``, and the bucket is empty then (sends resume paced)."""
        if until <= self.pause_until:
            return False
        self.pause_until = until
        self.tat = max(self.tat, until + self.tolerance)
        return True

    def at(self, now: float, ahead: int) -> float:
        """When a caller with ``ahead`` live waiters before it would be admitted."""
        start = max(now, self.pause_until)
        if not self.interval:
            return start
        spacing = self.interval + self.lag
        return max(start, max(self.tat, start) + ahead * spacing - self.tolerance)

    def admit(self, now: float, scheduled: float | None = None) -> None:
        """Take a token at ``now`` (the dispatcher passes when it was due: a timer that fires
        slightly late does not slow the long-run rate)."""
        if self.interval:
            self.tat = max(self.tat, now if scheduled is None else scheduled) + self.interval
        if self.control is not None:
            self.control.on_send(now)

    def finished(self, seconds: float) -> None:
        """A call admitted by this bucket took ``seconds`` through the rest of the chain."""
        self.latency += _WEIGHT * (seconds - self.latency)

    def idle(self, now: float) -> bool:
        """Nobody waits, no dispatcher runs and no pause the server asked for lasts past
        ``now``: the key can be forgotten (a paused key forgotten sent its next request at
        once, inside the server's ``Retry-After``)."""
        return (
            not self.waiters
            and (self.dispatcher is None or self.dispatcher.done())
            and self.pause_until <= now
        )

    def refusal(self, now: float, deadline: float, latest: float) -> float | None:
        """Seconds until a newcomer's turn if it must be refused now, else ``None``."""
        at = self.at(now, self.live)
        if at > now and (at + _HEADROOM * self.latency >= deadline or at > latest):
            return at - now
        return None

    async def wait(
        self, deadline: float, latest: float, clock: Callable[[], float], sleep: Sleep
    ) -> float | None:
        """Queue for a token; ``None`` once admitted, or a float: refused, retry after that."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), deadline, latest)
        self.waiters.append(waiter)
        self.live += 1
        if self.dispatcher is None or self.dispatcher.done():
            self.dispatcher = loop.create_task(self._dispatch(clock, sleep))
        try:
            return await waiter.future
        except asyncio.CancelledError:
            # Still queued: leave the line. (Cancelled just as its token was handed over: the
            # token is spent, as if the request had been sent.)
            if waiter.future.cancelled():
                self.live -= 1
                if len(self.waiters) > 2 * self.live + 32:  # drop the dead entries
                    self.waiters = deque(w for w in self.waiters if not w.future.done())
            raise

    async def _dispatch(self, clock: Callable[[], float], sleep: Sleep) -> None:
        """Hand each token to the oldest live waiter, sleeping until the next one is due."""
        woke_for: float | None = None  # when the last sleep was meant to end
        try:
            while True:
                waiters = self.waiters
                while waiters and waiters[0].future.done():
                    waiters.popleft()
                if not waiters:
                    return
                now = clock()
                due = self.at(now, 0)
                if due > now:
                    woke_for = due
                    await sleep(due - now)
                    continue
                head = waiters.popleft()
                self.live -= 1
                if woke_for is None:
                    self.admit(now)
                else:  # a busy loop fires timers late: measure it, forgive a little of it
                    self.lag += _WEIGHT * (max(0.0, now - woke_for) - self.lag)
                    self.admit(now, max(woke_for, now - min(_LATE_FORGIVEN, self.interval)))
                    woke_for = None
                head.future.set_result(None)
        except BaseException:
            for waiter in self.waiters:  # the loop is going away: nobody is left to wake them
                waiter.future.cancel()
            raise

    def refuse_late(self, now: float) -> None:
        """After the rate fell or a pause began: refuse the waiters who can no longer make it."""
        ahead = 0
        headroom = _HEADROOM * self.latency
        for waiter in self.waiters:
            if waiter.future.done():
                continue
            at = self.at(now, ahead)
            if at + headroom >= waiter.deadline or at > waiter.latest:
                waiter.future.set_result(at - now)
                self.live -= 1
            else:
                ahead += 1
