"""``Bulkhead``: at most N calls in flight per upstream, the rest wait in a bounded FIFO queue.

Per key (the upstream's origin by default) a compartment counts the calls in flight and holds
the queue of callers waiting for a slot. A finishing call hands its slot straight to the oldest
waiter (no barging: a newcomer never overtakes the queue). A compartment with nothing in flight
and nobody waiting is dropped, so memory follows the keys that are busy right now.

Every path out of a slot releases it in a ``finally``: a call that returns, fails or is
cancelled, and a waiter cancelled at the very moment it was handed a slot (it passes the slot on).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from .._args import need_callable
from .._context import get_context, upstream_of
from .._errors import BulkheadFullError, ConfigError
from .._events import rejected
from .._result import Next, Outcome

__all__ = ["Bulkhead"]

Sleep = Callable[[float], Awaitable[Any]]


class _Compartment:
    __slots__ = ("active", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class Bulkhead:
    """Cap the calls in flight per upstream; queue a bounded number of callers for a slot.

    A caller that finds all ``max_concurrent`` slots taken joins the key's FIFO queue if it
    holds fewer than ``max_queue`` callers, and gets ``BulkheadFullError`` at once otherwise.
    A queued caller waits until a slot is handed to it, or until ``queue_timeout`` or the
    request's deadline (``RequestContext.deadline``, set by ``Timeout(phase="total")``) comes
    first, whichever is earlier; then it gets ``BulkheadFullError`` and nothing is sent.

    Where it goes: inside ``Retry`` (each attempt takes a slot; a retry's backoff sleep holds
    none) and outside ``CircuitBreaker`` (time spent queueing is not counted as the upstream's
    latency, and the breaker never sees the bulkhead's own refusals). With a ``RateLimiter``,
    put the limiter first: a caller then holds a slot only while its request is really out::

        Timeout(total) → Retry → RateLimiter → Bulkhead → CircuitBreaker → Auth → terminal

    ``BulkheadFullError`` is not retried by ``Retry`` and not counted by ``CircuitBreaker``.

    Args:
        max_concurrent: calls allowed in flight at once per key, >= 1.
        max_queue: callers allowed to wait for a slot per key, >= 0 (0: refuse at once).
        queue_timeout: the longest wait for a slot, seconds (> 0), or ``None`` for no limit
            other than the request's deadline.
        key: the per-request key slots are counted under (default: the URL origin, or the
            context's ``upstream``).
        clock: monotonic clock, compared with the context's deadline (injectable for tests).
        sleep: the sleep that times a queued caller's wait (injectable for tests).

    Example:
        >>> bulkhead = Bulkhead(max_concurrent=20, max_queue=100, queue_timeout=2)
        >>> stack = [Timeout(10), Retry(), bulkhead, CircuitBreaker()]  # doctest: +SKIP
    """

    name = "bulkhead"

    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queue: int = 0,
        queue_timeout: float | None = None,
        key: Callable[[httpx.Request], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        for label, value, low in (
            ("max_concurrent", max_concurrent, 1),
            ("max_queue", max_queue, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"Bulkhead({label}=...) must be an int >= {low}, got {value!r}")
        if queue_timeout is not None and (
            isinstance(queue_timeout, bool)
            or not isinstance(queue_timeout, int | float)
            or not math.isfinite(queue_timeout)
            or queue_timeout <= 0
        ):
            raise ConfigError(
                f"Bulkhead(queue_timeout=...) must be a finite number > 0 or None, "
                f"got {queue_timeout!r}"
            )
        need_callable("Bulkhead", "key", key, optional=True)
        need_callable("Bulkhead", "clock", clock)
        need_callable("Bulkhead", "sleep", sleep)
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout = None if queue_timeout is None else float(queue_timeout)
        self._key = key or upstream_of
        self._clock = clock
        self._sleep = sleep
        self._compartments: dict[str, _Compartment] = {}

    def __repr__(self) -> str:
        return (
            f"Bulkhead(max_concurrent={self.max_concurrent}, max_queue={self.max_queue}, "
            f"queue_timeout={self.queue_timeout})"
        )

    def key_of(self, request: httpx.Request) -> str:
        """The key ``request``'s slots are counted under."""
        return self._key(request)

    def in_flight(self, key: str) -> int:
        """Calls holding a slot for ``key`` now."""
        compartment = self._compartments.get(key)
        return 0 if compartment is None else compartment.active

    def waiting(self, key: str) -> int:
        """Callers queued for a slot for ``key`` now."""
        compartment = self._compartments.get(key)
        return 0 if compartment is None else len(compartment.waiters)

    def keys(self) -> list[str]:
        """The keys with calls in flight or waiting (idle keys hold no state)."""
        return list(self._compartments)

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        key = self._key(request)
        compartment = self._compartments.get(key)
        if compartment is None:
            compartment = self._compartments[key] = _Compartment()
        if compartment.active < self.max_concurrent and not compartment.waiters:
            compartment.active += 1
        elif not await self._queue(request, key, compartment):
            full = BulkheadFullError(upstream=key, limit=self.max_concurrent, request=request)
            return rejected(request, key, "bulkhead", full)
        try:
            return await call_next(request)
        finally:
            self._release(key, compartment)

    async def _queue(self, request: httpx.Request, key: str, compartment: _Compartment) -> bool:
        """Wait for a slot handed over by a finishing call; ``False``: refused or timed out."""
        if len(compartment.waiters) >= self.max_queue:
            return False
        budget = self.queue_timeout
        deadline = get_context(request).deadline
        if deadline is not None:
            left = deadline - self._clock()
            budget = left if budget is None else min(budget, left)
        if budget is not None and budget <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        compartment.waiters.append(waiter)
        try:
            if budget is None:
                await waiter
            else:
                timer = asyncio.ensure_future(self._sleep(budget))
                try:
                    await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    timer.cancel()
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(key, compartment)  # handed a slot as we were cancelled: pass it on
            else:
                waiter.cancel()
                self._forget(key, compartment, waiter)
            raise
        if waiter.done():  # a slot was handed over (possibly as the timer fired: it wins)
            return True
        waiter.cancel()
        self._forget(key, compartment, waiter)
        return False

    def _release(self, key: str, compartment: _Compartment) -> None:
        """Hand the slot to the oldest live waiter, or give it back."""
        waiters = compartment.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        compartment.active -= 1
        self._drop_if_idle(key, compartment)

    def _forget(self, key: str, compartment: _Compartment, waiter: asyncio.Future[None]) -> None:
        try:
            compartment.waiters.remove(waiter)
        except ValueError:
            pass  # already popped by a release that found it cancelled
        self._drop_if_idle(key, compartment)

    def _drop_if_idle(self, key: str, compartment: _Compartment) -> None:
        if (
            compartment.active == 0
            and not compartment.waiters
            and self._compartments.get(key) is compartment
        ):
            del self._compartments[key]
