"""``Metrics``: in-process counters and a latency histogram per upstream, read as a snapshot."""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import TypeVar

import httpx
from returns.result import Failure

from .._args import is_number, items_of, need, need_callable
from .._context import upstream_of
from .._errors import ConfigError, StatusError
from .._events import BreakerEvent, Event, RetryEvent
from .._result import Next, Outcome
from ..state._store import DEFAULT_MAX_KEYS, shed_idle
from ._window import RecentWindow, WindowFigures

__all__ = ["DEFAULT_BUCKETS", "Histogram", "Metrics", "MetricsSnapshot", "UpstreamMetrics"]

K = TypeVar("K")

_bisect_left = bisect.bisect_left

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Histogram:
    """Latency counts: ``counts[i]`` requests took <= ``bounds[i]`` seconds (last: the rest)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    count: int

    def quantile(self, q: float) -> float:
        """An upper-bound estimate of the ``q`` quantile (0..1) in seconds; ``nan`` if empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, got {q}")
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            seen += n
            if seen >= rank:
                return bound
        return math.inf

    @property
    def mean(self) -> float:
        """Mean latency in seconds (``nan`` if empty)."""
        return self.total / self.count if self.count else math.nan


@dataclass(frozen=True, slots=True)
class UpstreamMetrics:
    """What one upstream saw: logical requests, outcomes, retries, breaker moves, latency."""

    requests: int
    successes: int
    failures: Mapping[str, int]
    statuses: Mapping[int, int]
    retries: int
    breaker_transitions: Mapping[str, int]
    latency: Histogram


MetricsSnapshot = Mapping[str, UpstreamMetrics]


class _Series:
    __slots__ = (
        "breaker",
        "counts",
        "failures",
        "requests",
        "retries",
        "statuses",
        "successes",
        "swept",
        "total",
        "window",
    )

    def __init__(self, size: int, window: float = 60.0) -> None:
        self.window = RecentWindow(window, size)  # the health view's recent figures
        self.swept = -1  # ``requests`` when the last sweep looked: unchanged means unused
        self.requests = 0
        self.successes = 0
        self.retries = 0
        self.total = 0.0
        self.counts = [0] * size
        self.failures: dict[str, int] = {}
        self.statuses: dict[int, int] = {}
        self.breaker: dict[str, int] = {}


class Metrics:
    """Count requests, outcomes and latency per upstream (the URL origin, never credentials).

    Place it outside ``Retry`` to measure logical calls; retries and breaker transitions are
    counted from the pipeline's events. Read with :meth:`snapshot`.

    At most ``max_upstreams`` upstreams have figures of their own (a crawler or a webhook
    sender talks to millions): past that, the upstreams with no request since the last sweep
    are folded into one entry, :attr:`OTHER`, so every total stays right while the table stays
    bounded. A sweep runs once per ``max_upstreams // 10`` new upstreams; a request costs no
    more than before.

    Args:
        buckets: histogram bounds in seconds, increasing.
        clock: timer for durations.
        max_upstreams: upstreams with figures of their own (>= 1; default 10,000).
        window: seconds of the recent window that :meth:`recent` (and ``client.health()``)
            reads: error rate, latency quantiles and request count (default 60).
    """

    name = "metrics"

    OTHER = "(other)"
    """The key the figures of forgotten upstreams are added to."""

    def __init__(
        self,
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        clock: Callable[[], float] = time.perf_counter,
        max_upstreams: int = DEFAULT_MAX_KEYS,
        window: float = 60.0,
    ) -> None:
        rule = "finite numbers > 0"
        items = items_of("Metrics", "buckets", buckets, rule)
        need(bool(items) and all(is_number(b) and b > 0 for b in items), "Metrics", "buckets",
             rule, buckets)  # fmt: skip
        need_callable("Metrics", "clock", clock)
        bounds = tuple(float(b) for b in items)
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ConfigError("Metrics(buckets=...) must be strictly increasing")
        if (
            isinstance(max_upstreams, bool)
            or not isinstance(max_upstreams, int)
            or max_upstreams < 1
        ):
            raise ConfigError(
                f"Metrics(max_upstreams=...) must be an int >= 1, got {max_upstreams!r}"
            )
        if (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not (0 < window < math.inf)
        ):
            raise ConfigError(
                f"Metrics(window=...) must be a number of seconds > 0, got {window!r}"
            )
        self._bounds = bounds
        self._clock = clock
        self.window = float(window)
        self.max_upstreams = max_upstreams
        self._series: dict[str, _Series] = {}

    def _get(self, upstream: str) -> _Series:
        series = self._series.get(upstream)
        if series is None:
            table = self._series
            other = self.OTHER
            if len(table) - (other in table) >= self.max_upstreams and upstream != other:
                self._sweep()
            series = table[upstream] = _Series(len(self._bounds) + 1, self.window)
        return series

    def _sweep(self) -> None:
        """Fold the upstreams unused since the last sweep into :attr:`OTHER` until a tenth of
        the room is free (used ones move to the back, a second chance: see ``shed_idle``)."""
        table = self._series
        other = table.pop(self.OTHER, None) or _Series(len(self._bounds) + 1, self.window)
        shed_idle(table, self.max_upstreams, partial(_fold, other))
        table[self.OTHER] = other

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        upstream = upstream_of(request)
        clock = self._clock
        start = clock()
        outcome = await call_next(request)
        end = clock()
        elapsed = end - start
        series = self._series.get(upstream)
        if series is None:
            series = self._get(upstream)
        window = series.window  # the health view's recent window: a mark once per slot
        if end >= window.until:
            window.roll(end, series.requests, series.counts)
        series.requests += 1
        series.total += elapsed
        bucket = _bisect_left(self._bounds, elapsed)
        series.counts[bucket] += 1
        if type(outcome) is Failure:
            error = outcome.failure()
            window.failed(bucket, error)
            kind = type(error).__name__
            series.failures[kind] = series.failures.get(kind, 0) + 1
            if isinstance(error, StatusError):
                status = error.status_code
                series.statuses[status] = series.statuses.get(status, 0) + 1
        else:
            series.successes += 1
            status = outcome.unwrap().status_code
            statuses = series.statuses
            statuses[status] = statuses.get(status, 0) + 1
        return outcome

    def on_event(self, event: Event) -> None:
        """Count retries and breaker transitions."""
        if isinstance(event, RetryEvent):
            self._get(upstream_of(event.request)).retries += 1
        elif isinstance(event, BreakerEvent):
            breaker = self._get(event.upstream).breaker
            key = f"{event.old.value}->{event.new.value}"
            breaker[key] = breaker.get(key, 0) + 1

    def snapshot(self) -> MetricsSnapshot:
        """An immutable copy of every upstream's figures."""
        return MappingProxyType(
            {
                upstream: UpstreamMetrics(
                    requests=s.requests,
                    successes=s.successes,
                    failures=MappingProxyType(dict(s.failures)),
                    statuses=MappingProxyType(dict(s.statuses)),
                    retries=s.retries,
                    breaker_transitions=MappingProxyType(dict(s.breaker)),
                    latency=Histogram(self._bounds, tuple(s.counts), s.total, s.requests),
                )
                for upstream, s in self._series.items()
            }
        )

    def recent(self) -> dict[str, WindowFigures]:
        """Each upstream's recent window (the last :attr:`window` seconds; changes nothing)."""
        now = self._clock()
        return {
            upstream: s.window.figures(now, s.requests, s.counts, self._bounds)
            for upstream, s in self._series.items()
        }

    def reset(self) -> None:
        """Forget everything counted so far."""
        self._series.clear()


def _fold(into: _Series, series: _Series) -> None:
    """Add ``series``'s figures to ``into``'s."""
    into.requests += series.requests
    into.successes += series.successes
    into.retries += series.retries
    into.total += series.total
    into.counts = [a + b for a, b in zip(into.counts, series.counts, strict=True)]
    _add(into.failures, series.failures)
    _add(into.statuses, series.statuses)
    _add(into.breaker, series.breaker)


def _add(into: dict[K, int], counts: dict[K, int]) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count
