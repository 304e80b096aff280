"""``RateLimiter``: a client-side token bucket per upstream, with a fixed or adaptive rate.

Each key (the upstream's origin by default) has a :class:`~._rate_bucket.Bucket`: GCRA state
and a FIFO queue served by one dispatcher task. A caller whose turn would come too close to its
deadline, or after ``max_wait``, is refused at once without sleeping; when the rate falls or a
pause begins, the queue is checked again and the callers who can no longer make it are refused
then. In adaptive mode a :class:`~._rate_control.CubicRate` per key moves the rate by what the
upstream answers, and a ``Retry-After`` pauses the whole key.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import httpx
from returns.result import Success

from .._args import need_callable, statuses_of
from .._context import get_context, upstream_of
from .._errors import ConfigError, RateLimitedError, StatusError
from .._events import rejected
from .._result import Next, Outcome
from ..state._shared import SharedRateStore
from ._rate_bucket import _HEADROOM, Bucket
from ._rate_control import CubicRate
from ._retry_after import parse_server_delay

__all__ = ["DEFAULT_THROTTLE_STATUSES", "RateLimitSnapshot", "RateLimiter"]

Sleep = Callable[[float], Awaitable[Any]]

DEFAULT_THROTTLE_STATUSES = frozenset({429, 503})
"""The answers adaptive mode reads as "slow down"."""


@dataclass(frozen=True, slots=True)
class RateLimitSnapshot:
    """One key's limiter state.

    Attributes:
        rate: requests per second now (``None``: not limited yet, adaptive mode only).
        waiting: callers queued for a token.
        paused_for: seconds left of a ``Retry-After`` pause (0 when not paused).
        throttles: 429/503 answers that cut the rate (adaptive mode; one per round).
    """

    rate: float | None
    waiting: int
    paused_for: float
    throttles: int


class RateLimiter:
    """Send at most ``rate`` requests per second per upstream; wait in line for a token.

    A token bucket per key holds up to ``burst`` tokens and refills at ``rate`` per second.
    A request takes a token and goes; when none is left it waits its turn (FIFO). If its turn
    would not leave time for the call before the request's deadline (``RequestContext.deadline``,
    set by ``Timeout(phase="total")``; twice the key's typical call duration is kept free), or
    is more than ``max_wait`` seconds away, it gets ``Failure(RateLimitedError)`` at once,
    without sleeping; ``retry_after`` says how long the wait would have been.

    **Adaptive mode** (``adaptive=True``) learns the rate from the upstream, after AWS SDKs'
    adaptive retry mode (CUBIC). A 429 or 503 (``throttle_statuses``) cuts the rate to 0.7x
    the rate it was sent at (0.5x while still searching: throttled again before the rate had
    grown); the rate then climbs back along a cubic curve to a plateau 10% below that rate,
    holds it (20 s per second of ``Retry-After`` pause), and only then probes higher. Until
    the first throttle where the limiter itself set the pace, there is no known ceiling and
    the rate doubles every 0.5 s instead (slow start). One cut per round: answers to requests
    sent before the last cut do not cut again. A ``Retry-After`` (or ``retry-after-ms``) on
    such an answer pauses the whole key, up to ``retry_after_max`` seconds: no request goes out
    before it, queued ones included. With ``rate=None`` the key is not limited until its
    first throttle, which cuts from the measured send rate. Fixed mode never reads answers.

    Where it goes: inside ``Retry`` (each attempt takes a token, and the limiter sees each
    attempt's answer; a retry's backoff sleep holds nothing) and outside ``CircuitBreaker``
    (time spent waiting for a token is not counted as the upstream's latency)::

        Timeout(total) → Retry → RateLimiter → Bulkhead → CircuitBreaker → Auth → terminal

    ``RateLimitedError`` is not retried by ``Retry`` and not counted by ``CircuitBreaker``.

    Args:
        rate: requests per second per key, > 0; in adaptive mode the starting rate, or
            ``None`` to start unlimited.
        burst: tokens the bucket holds (requests that may go at once), >= 1. Default: 50 ms
            worth of the rate, at least 1; in adaptive mode it then follows the rate.
        adaptive: learn the rate from 429/503 answers and ``Retry-After``.
        key: the per-request key buckets are kept under (default: the URL origin, or the
            context's ``upstream``).
        max_wait: the longest wait for a token, seconds (>= 0; 0 never waits), or ``None``
            for no limit other than the request's deadline.
        throttle_statuses: statuses adaptive mode reads as "slow down".
        retry_after_max: the longest ``Retry-After`` pause adaptive mode obeys, seconds.
        max_keys: keys kept at most; the least recently used idle key is forgotten beyond it.
        clock: monotonic clock, compared with the context's deadline (injectable for tests).
        sleep: the dispatcher's sleep (injectable for tests).
        wall_clock: Unix time, for HTTP-date ``Retry-After`` values.
        store: a store shared by processes (``httprail-redis``'s ``RedisStore``): every
            process then draws from one GCRA schedule per key (``rate`` in all, not per
            process), by one atomic reservation per request, and adaptive mode's
            ``Retry-After`` pauses hold every process. When the store cannot be reached in
            time, this process's own bucket decides (at the full ``rate``).

    Example:
        >>> stack = [Timeout(10), Retry(), RateLimiter(rate=50, burst=5)]  # doctest: +SKIP
        >>> stack = [Timeout(10), Retry(), RateLimiter(adaptive=True)]  # doctest: +SKIP
    """

    name = "rate_limit"

    def __init__(
        self,
        *,
        rate: float | None = None,
        burst: float | None = None,
        adaptive: bool = False,
        key: Callable[[httpx.Request], str] | None = None,
        max_wait: float | None = None,
        throttle_statuses: Collection[int] = DEFAULT_THROTTLE_STATUSES,
        retry_after_max: float = 60.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
        store: SharedRateStore | None = None,
    ) -> None:
        if not isinstance(adaptive, bool):
            raise ConfigError(f"RateLimiter(adaptive=...) must be True or False, got {adaptive!r}")
        if rate is None and not adaptive:
            raise ConfigError("RateLimiter(rate=...) is required unless adaptive=True")
        for label, value, low, inclusive in (
            ("rate", rate, 0.0, False),
            ("burst", burst, 1.0, True),
            ("max_wait", max_wait, 0.0, True),
            ("retry_after_max", retry_after_max, 0.0, False),
        ):
            if value is None and label != "retry_after_max":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or (value < low if inclusive else value <= low)
            ):
                rule = f">= {low:g}" if inclusive else f"> {low:g}"
                raise ConfigError(
                    f"RateLimiter({label}=...) must be a finite number {rule}, got {value!r}"
                )
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigError(f"RateLimiter(max_keys=...) must be an int >= 1, got {max_keys!r}")
        statuses = statuses_of("RateLimiter", "throttle_statuses", throttle_statuses)
        need_callable("RateLimiter", "key", key, optional=True)
        for label, fn in (("clock", clock), ("sleep", sleep), ("wall_clock", wall_clock)):
            need_callable("RateLimiter", label, fn)
        if store is not None and not (
            isinstance(store, SharedRateStore)
            and inspect.iscoroutinefunction(store.rate_acquire)
            and inspect.iscoroutinefunction(store.rate_pause)
        ):
            raise ConfigError(
                f"RateLimiter(store=...) must be a shared rate store (async rate_acquire and "
                f"rate_pause), got {store!r}"
            )
        self.store = store
        self.rate = None if rate is None else float(rate)
        self.burst = None if burst is None else float(burst)
        self.adaptive = adaptive
        self.max_wait = None if max_wait is None else float(max_wait)
        self.throttle_statuses = statuses
        self.retry_after_max = float(retry_after_max)
        self.max_keys = max_keys
        self._key = key or upstream_of
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def __repr__(self) -> str:
        mode = ", adaptive=True" if self.adaptive else ""
        return f"RateLimiter(rate={self.rate}, burst={self.burst}{mode})"

    def key_of(self, request: httpx.Request) -> str:
        """The key ``request``'s bucket is kept under."""
        return self._key(request)

    def keys(self) -> list[str]:
        """The keys the limiter holds state for, least recently used first."""
        return list(self._buckets)

    def snapshot(self, key: str) -> RateLimitSnapshot | None:
        """``key``'s state now, or ``None`` if the limiter holds none for it."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        throttles = 0 if bucket.control is None else bucket.control.throttles
        paused = max(0.0, bucket.pause_until - self._clock())
        return RateLimitSnapshot(bucket.rate, bucket.live, paused, throttles)

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        key = self._key(request)
        bucket = self._bucket_for(key)
        if self.store is not None:
            shared = await self._shared(self.store, request, call_next, key, bucket)
            if shared is not None:
                return shared  # else the store was unreachable: this process's bucket decides
        now = self._clock()
        rate = bucket.rate
        control = bucket.control
        queued = bool(bucket.live) or bucket.at(now, 0) > now
        if not queued:
            bucket.admit(now)
        else:
            deadline = get_context(request).deadline
            deadline = math.inf if deadline is None else deadline
            latest = math.inf if self.max_wait is None else now + self.max_wait
            refused = bucket.refusal(now, deadline, latest)
            if refused is None:
                refused = await bucket.wait(deadline, latest, self._clock, self._sleep)
            if refused is not None:
                limited = RateLimitedError(upstream=key, retry_after=refused, request=request)
                return rejected(request, key, "rate_limit", limited)
            now = self._clock()
            rate = bucket.rate
        round_sent = 0 if control is None else control.throttles
        outcome = await call_next(request)
        done = self._clock()
        bucket.finished(done - now)
        if control is not None:
            self._observe(bucket, control, outcome, round_sent, rate, queued, done)
        return outcome

    async def _shared(
        self,
        store: SharedRateStore,
        request: httpx.Request,
        call_next: Next,
        key: str,
        bucket: Bucket,
    ) -> Outcome | None:
        """A request through the shared schedule: one reservation, its wait, the call; ``None``
        (nothing sent) when the store cannot be reached in time."""
        now = self._clock()
        room = self.max_wait
        deadline = get_context(request).deadline
        if deadline is not None:  # the turn must leave time for the call, as locally
            left = deadline - now - _HEADROOM * bucket.latency
            room = left if room is None else min(room, left)
        answer = await store.rate_acquire(
            key, bucket.interval, bucket.tolerance, None if room is None else max(0.0, room)
        )
        if answer is None:
            return None
        granted, wait = answer
        if not granted:
            limited = RateLimitedError(upstream=key, retry_after=wait, request=request)
            return rejected(request, key, "rate_limit", limited)
        if wait > 0:
            await self._sleep(wait)
        control = bucket.control
        rate = bucket.rate
        start = self._clock()
        round_sent = 0
        if control is not None:
            control.on_send(start)
            round_sent = control.throttles
        outcome = await call_next(request)
        done = self._clock()
        bucket.finished(done - start)
        if control is not None:
            pause = self._observe(bucket, control, outcome, round_sent, rate, wait > 0, done)
            if pause > 0:
                await store.rate_pause(key, pause)  # every process holds off
        return outcome

    def _bucket_for(self, key: str) -> Bucket:
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is not None:
            buckets.move_to_end(key)
            return bucket
        if len(buckets) >= self.max_keys:
            now = self._clock()
            for old in list(buckets):  # least recently used first; a busy or paused key is kept
                if buckets[old].idle(now):
                    del buckets[old]
                    if len(buckets) < self.max_keys:
                        break
        control = CubicRate(self.rate) if self.adaptive else None
        bucket = buckets[key] = Bucket(self.rate, self.burst, control)
        return bucket

    def _observe(
        self,
        bucket: Bucket,
        control: CubicRate,
        outcome: Outcome,
        round_sent: int,
        rate_at_send: float | None,
        queued: bool,
        now: float,
    ) -> float:
        """Adaptive mode: move the key's rate by what the upstream answered; the seconds of
        ``Retry-After`` pause it began (0: none)."""
        if isinstance(outcome, Success):
            response: httpx.Response = outcome.unwrap()
        else:
            error = outcome.failure()
            if not isinstance(error, StatusError):
                return 0.0  # no answer (transport error, timeout): says nothing about the rate
            response = error.response
        if response.status_code not in self.throttle_statuses:
            if control.rate is not None:
                bucket.set_rate(control.on_accept(now), now)
            return 0.0
        delay = parse_server_delay(response.headers, self._wall_clock()).seconds
        pause = 0.0 if delay is None else min(max(0.0, delay), self.retry_after_max)
        changed = control.on_throttle(now, round_sent, rate_at_send, queued, pause)
        if changed:
            bucket.set_rate(control.rate, now)
        if pause > 0:
            changed = bucket.pause(now + pause) or changed
        if changed and bucket.live:
            bucket.refuse_late(now)
        return pause
