"""``Timeout``: a deadline for the whole call (across retries) or for each attempt.

Arming an ``asyncio.timeout`` per request costs ~10 µs here (a timer handle pushed on the loop's
heap, then cancelled). A ``Timeout`` stage gives every request the same budget, so deadlines
arrive in increasing order: they go in a FIFO queue watched by a single loop timer, armed for
the oldest live deadline. Adding and finishing a request are O(1); expiry cancels the task the
way ``asyncio.timeout`` does and turns the cancellation into a ``RequestTimeoutError``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import httpx
from returns.result import Failure

from .._context import EXTENSION_KEY, RequestContext, get_context
from .._errors import ConfigError, RequestTimeoutError
from .._result import Next, Outcome
from .._settings import HttpSettings

__all__ = ["Timeout"]


class Timeout:
    """Fail the request with ``RequestTimeoutError`` when its time is up.

    ``phase="total"`` (place it outside ``Retry``) bounds the whole call including backoff
    sleeps, and records the deadline in the request context so ``Retry`` never sleeps past it.
    ``phase="attempt"`` (place it inside ``Retry``) bounds each try; an attempt timeout is
    retryable, a total timeout is not. When an outer deadline is nearer than the attempt
    timeout, the outer one wins and the error says ``phase="total"``.

    Args:
        seconds: the time allowed, > 0.
        phase: ``"total"`` or ``"attempt"``.
        clock: monotonic clock, injectable for tests.

    Example:
        >>> stack = [Timeout(10), Retry(), Timeout(2, phase="attempt")]  # doctest: +SKIP
    """

    __slots__ = ("_clock", "_queue", "name", "phase", "seconds")

    def __init__(
        self,
        seconds: float,
        *,
        phase: Literal["total", "attempt"] = "total",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ConfigError(f"Timeout(seconds=...) must be a number, got {seconds!r}")
        if not math.isfinite(seconds) or seconds <= 0:
            raise ConfigError(f"Timeout(seconds=...) must be a finite number > 0, got {seconds!r}")
        if phase not in ("total", "attempt"):
            raise ConfigError(f"Timeout(phase=...) must be 'total' or 'attempt', got {phase!r}")
        self.seconds = float(seconds)
        self.phase: Literal["total", "attempt"] = phase
        self.name = f"timeout_{phase}"
        self._clock = clock
        self._queue: _DeadlineQueue | None = None

    @classmethod
    def from_settings(cls, settings: HttpSettings, **overrides: Any) -> Timeout:
        """A total deadline of ``timeout_total`` (or, with ``phase="attempt"``, a per-attempt
        timeout of ``timeout_attempt``); keyword arguments win."""
        phase = overrides.get("phase", "total")
        default = settings.timeout_attempt if phase == "attempt" else settings.timeout_total
        if "seconds" not in overrides and default is None:
            raise ConfigError(
                "Timeout(phase='attempt') needs seconds=... or HTTP_TIMEOUT_ATTEMPT to be set"
            )
        return cls(**{"seconds": default, **overrides})

    def __repr__(self) -> str:
        return f"Timeout({self.seconds}, phase={self.phase!r})"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        ctx = get_context(request)
        now = self._clock()
        budget = self.seconds
        phase: Literal["total", "attempt"] = self.phase
        outer = ctx.deadline
        if outer is not None and outer - now <= budget:
            budget = outer - now
            phase = "total"
        elif self.phase == "total":
            request.extensions[EXTENSION_KEY] = _with_deadline(ctx, now + budget)
        if budget <= 0:
            return Failure(_expired(request, phase, self.seconds))
        loop = asyncio.get_running_loop()
        queue = self._queue
        if queue is None or queue.loop is not loop:
            queue = self._queue = _DeadlineQueue(loop)
        task = asyncio.current_task()
        watch = None if task is None else queue.add(loop.time() + budget, task)
        if task is None or watch is None:  # out of order (a clamped budget): its own timer
            return await _guarded(request, call_next, budget, phase, self.seconds)
        cancelling = task.cancelling()
        try:
            outcome = await call_next(request)
        except asyncio.CancelledError:
            if watch.expired and task.uncancel() <= cancelling:
                return Failure(_expired(request, phase, self.seconds))
            raise
        finally:
            queue.finish(watch)
        if watch.expired:  # the timer fired as the answer arrived: the answer wins
            task.uncancel()
        return outcome


async def _guarded(
    request: httpx.Request,
    call_next: Next,
    budget: float,
    phase: Literal["total", "attempt"],
    seconds: float,
) -> Outcome:
    scope = asyncio.timeout(budget)
    try:
        async with scope:
            return await call_next(request)
    except TimeoutError:
        if not scope.expired():
            raise
        return Failure(_expired(request, phase, seconds))


class _Watch:
    __slots__ = ("deadline", "done", "expired", "task")

    def __init__(self, deadline: float, task: asyncio.Task[object]) -> None:
        self.deadline = deadline
        self.task = task
        self.done = False
        self.expired = False


class _DeadlineQueue:
    """Deadlines in non-decreasing order, watched by one timer on ``loop``."""

    __slots__ = ("_entries", "_handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._entries: deque[_Watch] = deque()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, deadline: float, task: asyncio.Task[object]) -> _Watch | None:
        """Watch ``task`` until ``deadline``; ``None`` if it is earlier than the newest one."""
        entries = self._entries
        if entries and deadline < entries[-1].deadline:
            return None
        watch = _Watch(deadline, task)
        entries.append(watch)
        if self._handle is None:
            self._handle = self.loop.call_at(deadline, self._fire)
        return watch

    def finish(self, watch: _Watch) -> None:
        """Stop watching; drop finished entries from the front."""
        watch.done = True
        entries = self._entries
        while entries and entries[0].done:
            entries.popleft()

    def _fire(self) -> None:
        self._handle = None
        now = self.loop.time()
        entries = self._entries
        while entries:
            head = entries[0]
            if head.done:
                entries.popleft()
            elif head.deadline > now:
                self._handle = self.loop.call_at(head.deadline, self._fire)
                return
            else:
                entries.popleft()
                head.done = head.expired = True
                head.task.cancel()


def _with_deadline(ctx: RequestContext, deadline: float) -> RequestContext:
    return ctx.with_deadline(deadline)


def _expired(
    request: httpx.Request, phase: Literal["total", "attempt"], seconds: float
) -> RequestTimeoutError:
    what = "the call's total deadline" if phase == "total" else f"the {seconds:g}s attempt timeout"
    return RequestTimeoutError(f"{what} passed", phase=phase, request=request)
