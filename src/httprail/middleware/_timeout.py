"""``Timeout``: a deadline for the whole call (across retries) or for each attempt."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Literal

import httpx
from returns.result import Failure

from .._context import EXTENSION_KEY, RequestContext, get_context
from .._errors import ConfigError, RequestTimeoutError
from .._result import Next, Outcome

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

    __slots__ = ("_clock", "name", "phase", "seconds")

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
        scope = asyncio.timeout(budget)
        try:
            async with scope:
                return await call_next(request)
        except TimeoutError:
            if not scope.expired():
                raise
            return Failure(_expired(request, phase, self.seconds))


def _with_deadline(ctx: RequestContext, deadline: float) -> RequestContext:
    return ctx.replace(deadline=deadline)


def _expired(
    request: httpx.Request, phase: Literal["total", "attempt"], seconds: float
) -> RequestTimeoutError:
    what = "the call's total deadline" if phase == "total" else f"the {seconds:g}s attempt timeout"
    return RequestTimeoutError(f"{what} passed", phase=phase, request=request)
