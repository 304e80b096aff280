"""``Timeout``: a deadline for the whole call (across retries) or for each attempt.

A ``Timeout`` stage gives every request the same budget, so its deadlines arrive in increasing
order and go in one :class:`~httprail._deadlines.DeadlineQueue` (one loop timer for all of them,
not one per request); expiry cancels the task the way ``asyncio.timeout`` does and turns the
cancellation into a ``RequestTimeoutError``.
"""

from __future__ import annotations

import asyncio
import math
import time
from asyncio import _get_running_loop as _running_loop
from collections.abc import Callable
from time import monotonic as _monotonic
from typing import Any, Literal

import httpx
from returns.result import Failure

from .._args import need_callable
from .._context import DEFAULT_CONTEXT, EXTENSION_KEY, RequestContext
from .._deadlines import DeadlineQueue, current_task_of
from .._errors import ConfigError, RequestTimeoutError
from .._result import Next, Outcome
from .._settings import HttpSettings

__all__ = ["Timeout"]

_new_tuple = tuple.__new__


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

    __slots__ = ("_clock", "_monotonic", "_queue", "_total", "name", "phase", "seconds")

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
        need_callable("Timeout", "clock", clock)
        self.seconds = float(seconds)
        self.phase: Literal["total", "attempt"] = phase
        self.name = f"timeout_{phase}"
        self._clock = clock
        self._total = phase == "total"
        self._monotonic = clock is _monotonic  # the queue's clock: one read serves both
        self._queue: DeadlineQueue | None = None

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
        # The hot path of every request: no helper calls (each Python call here cost ~1k
        # instructions), the context rebuilt as a plain tuple, one clock read.
        extensions = request.extensions
        ctx = extensions.get(EXTENSION_KEY)
        if not isinstance(ctx, RequestContext):
            ctx = DEFAULT_CONTEXT
        now = self._clock()
        budget = self.seconds
        phase: Literal["total", "attempt"] = self.phase
        attempt, outer, upstream, provider, stream, raw_status, tags, observers = ctx
        if outer is not None and outer - now <= budget:
            budget = outer - now
            phase = "total"
        elif self._total:  # the context with its deadline, built as a plain tuple
            deadline = now + budget
            fields = (attempt, deadline, upstream, provider, stream, raw_status, tags, observers)
            extensions[EXTENSION_KEY] = _new_tuple(RequestContext, fields)
        if budget <= 0:
            return Failure(_expired(request, phase, self.seconds))
        loop = _running_loop()
        task = None if loop is None else current_task_of(loop)
        if loop is None or task is None:  # pragma: no cover - awaited outside any task
            return await _guarded(request, call_next, budget, phase, self.seconds)
        queue = self._queue
        if queue is None or queue.loop is not loop:
            queue = self._queue = DeadlineQueue(loop)
        due = (now if self._monotonic else _monotonic()) + budget
        if not queue.add(task, due):
            # Out of order (a clamped budget) or watched already (the stage twice in a chain).
            return await _guarded(request, call_next, budget, phase, self.seconds)
        cancelling = task.cancelling()
        try:
            outcome = await call_next(request)
        except asyncio.CancelledError:
            if queue.finish(task) and task.uncancel() <= cancelling:
                return Failure(_expired(request, phase, self.seconds))
            raise
        except BaseException:
            queue.finish(task)
            raise
        # ``queue.finish(task)``, its call saved when the task was still watched (the rule)
        if queue.watched.pop(task, None) is None and queue.finish(task):  # pragma: no cover
            task.uncancel()  # the timer fired as the answer arrived
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


def _expired(
    request: httpx.Request, phase: Literal["total", "attempt"], seconds: float
) -> RequestTimeoutError:
    what = "the call's total deadline" if phase == "total" else f"the {seconds:g}s attempt timeout"
    return RequestTimeoutError(f"{what} passed", phase=phase, request=request)
