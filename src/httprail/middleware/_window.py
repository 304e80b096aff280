"""A small rolling window of one upstream's recent outcomes and latencies (for the health view).

``Metrics`` keeps one per upstream beside its lifetime counters; :mod:`httprail._health` reads it
as :class:`WindowFigures`. The window is a ring of time slots: recording a request touches one
slot (a few integer increments), and slots older than the window are zeroed when the ring moves
on, so a read costs the same whatever the traffic was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._errors import ClientStatusError, RequestError

__all__ = ["SLOTS", "RecentWindow", "WindowFigures", "is_upstream_error"]

SLOTS = 6
_TOO_MANY_REQUESTS = 429


def is_upstream_error(error: RequestError) -> bool:
    """Whether ``error`` says the upstream is unwell: transport errors, timeouts, 5xx, 429 and
    retries given up on count; the caller's own errors, open-circuit or budget rejections (see
    ``counts_against_upstream``) and other 4xx answers do not."""
    if not error.counts_against_upstream:
        return False
    return not isinstance(error, ClientStatusError) or error.status_code == _TOO_MANY_REQUESTS


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """What one upstream saw during the last ``seconds``.

    Attributes:
        seconds: the window's length.
        requests: logical requests finished in the window (rejections included).
        reached: those whose outcome says something about the upstream (a success or an
            upstream error): the denominator of the error rate and the latency sample.
        errors: upstream errors (see :func:`is_upstream_error`).
        bounds: the latency histogram's bucket bounds (seconds).
        counts: requests per latency bucket (the last one: above every bound).
    """

    seconds: float
    requests: int
    reached: int
    errors: int
    bounds: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def error_rate(self) -> float | None:
        """``errors / reached``, or ``None`` when nothing reached the upstream."""
        return self.errors / self.reached if self.reached else None

    def quantile(self, q: float) -> float | None:
        """An upper-bound estimate of the ``q`` latency quantile in seconds (the bucket bound
        it falls under); ``None`` when there is no sample, or when it lies above every bound."""
        total = sum(self.counts)
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            seen += n
            if seen >= rank:
                return bound
        return None


class RecentWindow:
    """The last ``seconds`` of one upstream, in :data:`SLOTS` slots of ``seconds / SLOTS``.

    Not thread-safe (like ``Metrics``: one event loop).
    """

    __slots__ = ("active", "counts", "errors", "reached", "requests", "tick", "width")

    def __init__(self, seconds: float, size: int) -> None:
        self.width = seconds / SLOTS
        self.tick = 0
        self.active = 0  # requests in flight now (kept here: the window is per upstream)
        self.requests = [0] * SLOTS
        self.reached = [0] * SLOTS
        self.errors = [0] * SLOTS
        self.counts = [[0] * size for _ in range(SLOTS)]

    def add(self, now: float, bucket: int, failure: RequestError | None) -> None:
        """Record one finished request at clock value ``now``, its latency in histogram
        ``bucket``; ``failure`` is its error (``None`` for a success)."""
        tick = int(now // self.width)
        if tick != self.tick:
            self._move(tick)
        slot = tick % SLOTS
        self.requests[slot] += 1
        if failure is None:
            self.reached[slot] += 1
            self.counts[slot][bucket] += 1
        elif is_upstream_error(failure):
            self.reached[slot] += 1
            self.errors[slot] += 1
            self.counts[slot][bucket] += 1

    def figures(self, now: float, bounds: tuple[float, ...]) -> WindowFigures:
        """The window's totals at clock value ``now`` (changes nothing)."""
        tick = int(now // self.width)
        newest = self.tick
        live = [s for s in range(SLOTS) if tick >= newest and tick - _tick_of(newest, s) < SLOTS]
        counts = [0] * len(self.counts[0])
        for slot in live:
            for index, n in enumerate(self.counts[slot]):
                counts[index] += n
        return WindowFigures(
            seconds=self.width * SLOTS,
            requests=sum(self.requests[s] for s in live),
            reached=sum(self.reached[s] for s in live),
            errors=sum(self.errors[s] for s in live),
            bounds=bounds,
            counts=tuple(counts),
        )

    def _move(self, tick: int) -> None:
        """Zero the slots between the last tick and ``tick`` (all of them after a long gap)."""
        gap = tick - self.tick
        stale = range(SLOTS) if gap >= SLOTS or gap < 0 else range(self.tick + 1, tick + 1)
        for t in stale:
            slot = t % SLOTS
            self.requests[slot] = self.reached[slot] = self.errors[slot] = 0
            self.counts[slot] = [0] * len(self.counts[slot])
        self.tick = tick


def _tick_of(newest: int, slot: int) -> int:
    """The tick whose counts ``slot`` holds, given the newest tick written."""
    return newest - (newest - slot) % SLOTS
