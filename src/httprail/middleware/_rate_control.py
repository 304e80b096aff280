"""The adaptive rate of one key: CUBIC as in AWS SDKs' adaptive retry mode, with a plateau.

After a throttle (429/503) of a request sent at rate ``w``, the rate is cut to ``BETA * w``
(``BETA_SEARCH * w`` if the rate had not grown since the previous cut) and then follows,
with ``t`` counted from the end of the ``Retry-After`` pause::

    rate(t) = target - SCALE * (K - t)**3            0 <= t < K          concave recovery
    rate(t) = target                                 K <= t < K + hold   plateau
    rate(t) = target + SCALE * (t - K - hold)**3     t >= K + hold       convex probing

where ``target = PLATEAU * w`` and ``K = cbrt((target - cut rate) / SCALE)``, so the curve is
continuous. ``BETA`` (0.7), ``SCALE`` (0.4 requests/s per s^3) and ``MIN_RATE`` are AWS's.

Where this departs from CUBIC (RFC 8312) and AWS, which climb back to ``w`` itself and probe
at once: each throttle here can cost a ``Retry-After`` pause of the whole key, so the rate
settles below the point where the upstream pushed back (an upstream's burst allowance hides
the excess until it runs dry, so that point overshoots its capacity) and holds for
``HOLD_PER_PAUSE`` seconds per second of pause before probing: probing then costs about
1/``HOLD_PER_PAUSE`` of the time. A throttle after holding the plateau ``_HELD_SECONDS``
steps down by ``PLATEAU_STEP`` only; one on reaching it cuts as a climb's does. And a
ceiling is *known* only when the limiter itself was pacing the throttled request; until then
(no limit yet, or fewer requests than allowed) the rate grows by slow start, doubling every
``DOUBLING_SECONDS``, as TCP does without a known threshold.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

__all__ = ["CubicRate"]

BETA = 0.7  # the cut: rate = BETA * send rate at the throttle (AWS, RFC 8312)
BETA_SEARCH = 0.5  # the cut when throttled before the plateau was reached: still searching
SCALE = 0.4  # CUBIC's C: requests/s per second^3 (AWS)
PLATEAU = 0.9  # recover to this share of the throttled send rate, then hold
PLATEAU_STEP = 0.95  # ... of the plateau's rate, when throttled while holding it
HOLD_PER_PAUSE = 20.0  # seconds of plateau per second of Retry-After pause
MIN_RATE = 0.5  # requests/s, the floor (AWS)
DOUBLING_SECONDS = 0.5  # slow start while no ceiling is known: the rate doubles this often
_METER_SIZE = 64  # send times kept to measure the send rate
_METER_SECONDS = 2.0  # ... over at most this long
_METER_MIN = 3  # fewer sends than this since the last cut or pause: no measure
_AT_PLATEAU = 0.98  # within 2% below the plateau counts as on it (the curve is flat there)
_HELD_SECONDS = 2.0  # ... and holding it once it has been on it this long: a throttle on
# arrival says the plateau itself was too high (the climb ran past the edge)
_SEARCH_GROWTH = 1.05  # throttled before the rate grew this much since the cut: searching


class CubicRate:
    """The rate of one key in adaptive mode; ``rate`` is ``None`` until the first throttle.

    Attributes:
        rate: requests per second now (``None``: unlimited).
        w_max: the send rate at the last throttle.
        throttles: throttles that cut the rate (one per round).
    """

    __slots__ = (
        "hold",
        "k",
        "known",
        "measure_from",
        "rate",
        "sends",
        "start",
        "target",
        "throttles",
        "w_max",
    )

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.w_max = self.target = self.start = rate or 0.0
        self.k = self.hold = 0.0
        self.known = False  # the last cut came from the limiter's own pace: a ceiling
        self.measure_from = -math.inf  # the curve's t = 0 (the last pause's end); sends
        # before it are not measured
        self.throttles = 0
        self.sends: deque[float] = deque(maxlen=_METER_SIZE)

    def on_send(self, now: float) -> None:
        """A request was admitted at ``now``."""
        if self.measure_from == -math.inf and self.rate is not None:
            self.measure_from = now  # a configured starting rate: slow start begins now
        self.sends.append(now)

    def measured(self, now: float) -> float | None:
        """The send rate over the recent sends, or ``None`` if too few to tell."""
        sends = self.sends
        window = _METER_SECONDS if self.rate is None else max(_METER_SECONDS, 4.0 / self.rate)
        since = max(now - window, self.measure_from)
        while sends and sends[0] < since:
            sends.popleft()
        count = len(sends)
        if count < (2 if self.rate is None else _METER_MIN) or sends[-1] <= sends[0]:
            return None
        if count == 2:
            return 1.0 / (sends[1] - sends[0])
        # Leave out the longest gap: one stray earlier request (a warm-up, the last request
        # before an idle spell) must not pass for the pace of what follows it.
        longest = max(b - a for a, b in itertools.pairwise(sends))
        span = sends[-1] - sends[0] - longest
        return (count - 2) / span if span > 0 else None

    def _demand_cap(self, now: float) -> float:
        """Grow no further than twice what is being sent (not at all if nothing is)."""
        measured = self.measured(now)
        if measured is None:
            return self.rate if self.rate is not None else self.start
        return max(self.start, 2.0 * measured)

    def on_throttle(
        self, now: float, round_sent: int, rate_at_send: float | None, queued: bool, pause: float
    ) -> bool:
        """A request sent in round ``round_sent`` (``throttles`` when it was admitted), when the
        rate was ``rate_at_send``, was throttled; ``queued``: it had waited for its token;
        ``pause``: its Retry-After, seconds (or 0).

        Returns whether the rate was cut: once per round, so answers to requests sent before
        the last cut do not cut again.
        """
        if round_sent != self.throttles:
            return False
        measured = self.measured(now)
        # The ceiling is known when the limiter itself was pacing the throttled request; a
        # measured send rate (not limited yet, or fewer requests than allowed) is a guess.
        known = rate_at_send is not None and queued
        if rate_at_send is None:
            base = measured if measured is not None else MIN_RATE
        elif known or measured is None:
            base = rate_at_send
        else:
            base = min(measured, rate_at_send)
        base = max(base, MIN_RATE)
        # Throttled before the rate grew past the cut: the cut was not deep enough.
        searching = rate_at_send is None or rate_at_send <= self.start * _SEARCH_GROWTH
        # Throttled while holding a plateau it had kept for a while: it was only just too
        # high. A rate that was still climbing, or had only just reached the plateau, ran
        # past the edge by an unknown margin (the upstream's burst hides the excess until it
        # runs dry).
        held = (
            known
            and self.known
            and rate_at_send is not None
            and _AT_PLATEAU * self.target <= rate_at_send <= self.target
            and now - self.measure_from >= self.k + _HELD_SECONDS
        )
        self.w_max = base
        self.target = max(MIN_RATE, (PLATEAU_STEP if held else PLATEAU) * base)
        self.rate = self.start = max(MIN_RATE, (BETA_SEARCH if searching else BETA) * base)
        self.k = (max(0.0, self.target - self.rate) / SCALE) ** (1 / 3)
        self.hold = max(self.k, HOLD_PER_PAUSE * pause) if known else 0.0
        self.known = known
        self.measure_from = now + pause
        self.throttles += 1
        return True

    def on_accept(self, now: float) -> float | None:
        """The upstream accepted a request: the rate on the curve at ``now``."""
        if self.rate is None:
            return None
        t = now - self.measure_from  # the curve starts when the pause ends
        if t < 0:
            return self.rate
        if not self.known:  # no ceiling yet: slow start, doubling until throttled
            rate = self.start * 2.0 ** min(t / DOUBLING_SECONDS, 32.0)
            rate = min(rate, self._demand_cap(now))
        elif t < self.k:
            rate = self.target - SCALE * (self.k - t) ** 3
        elif t < self.k + self.hold:
            rate = self.target
        else:
            rate = self.target + SCALE * (t - self.k - self.hold) ** 3
            rate = min(rate, max(self.target, self._demand_cap(now)))
        self.rate = max(MIN_RATE, rate)
        return self.rate
