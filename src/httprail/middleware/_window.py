"""A small rolling window of one upstream's recent outcomes and latencies (for the health view).

``Metrics`` keeps one per upstream beside its lifetime counters; :mod:`httprail._health` reads it
as :class:`WindowFigures`. It costs a successful request one comparison: the window is the
difference between the lifetime counters ``Metrics`` keeps anyway and a mark filed at most once
per slot (a sixth of the window).
"""

from __future__ import annotations

import math
from collections import deque
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
    """The last ``seconds`` of one upstream, read as the difference between its ``Metrics``
    counters now and a mark taken at the start of the window.

    A request that ends past ``until`` (once per slot of ``seconds / SLOTS`` at most) files a
    mark: the slot's number and the upstream's lifetime counters before that request. A read
    subtracts the oldest mark inside the window from the counters now. So a success costs one
    comparison; only failures that did not reach the upstream (or reached it and failed) are
    counted here, to leave them out of the latency sample. Not thread-safe (like ``Metrics``).
    """

    __slots__ = ("errors", "marks", "skipped", "skipped_counts", "until", "width")

    def __init__(self, seconds: float, size: int) -> None:
        self.width = seconds / SLOTS
        self.until = -math.inf  # the first request files a mark
        self.errors = 0  # upstream errors (lifetime)
        self.skipped = 0  # failures that say nothing about the upstream (lifetime)
        self.skipped_counts = [0] * size  # their latencies
        self.marks: deque[tuple[int, int, int, int, tuple[int, ...], tuple[int, ...]]] = deque(
            maxlen=SLOTS
        )

    def roll(self, now: float, requests: int, counts: list[int]) -> None:
        """File a mark for the slot holding ``now``: ``requests`` and latency ``counts`` are
        the upstream's lifetime figures before the request being counted."""
        tick = int(now // self.width)
        mark = (tick, requests, self.skipped, self.errors, tuple(counts), (*self.skipped_counts,))
        self.marks.append(mark)
        self.until = (tick + 1) * self.width

    def failed(self, bucket: int, error: RequestError) -> None:
        """Count a failure whose latency fell in ``bucket``."""
        if is_upstream_error(error):
            self.errors += 1
        else:
            self.skipped += 1
            self.skipped_counts[bucket] += 1

    def figures(
        self, now: float, requests: int, counts: list[int], bounds: tuple[float, ...]
    ) -> WindowFigures:
        """The window at clock value ``now``, given the upstream's lifetime ``requests`` and
        latency ``counts`` (changes nothing)."""
        tick = int(now // self.width)
        start = next((m for m in self.marks if 0 <= tick - m[0] < SLOTS), None)
        if start is None:  # no request ended inside the window
            return WindowFigures(self.width * SLOTS, 0, 0, 0, bounds, (0,) * len(counts))
        _, requests0, skipped0, errors0, counts0, skipped_counts0 = start
        skipped = self.skipped - skipped0
        latencies = tuple(
            (now_n - then_n) - (skip_now - skip_then)
            for now_n, then_n, skip_now, skip_then in zip(
                counts, counts0, self.skipped_counts, skipped_counts0, strict=True
            )
        )
        total = requests - requests0
        return WindowFigures(
            seconds=self.width * SLOTS,
            requests=total,
            reached=total - skipped,
            errors=self.errors - errors0,
            bounds=bounds,
            counts=latencies,
        )
