"""``CircuitBreaker``: stop calling an upstream that keeps failing, and probe it carefully.

The state machine per key (the upstream's origin by default)::

             F consecutive failures, or (rate mode) over the
             last `window` s ≥ `min_throughput` calls and
             failures/calls ≥ `failure_ratio`                      break elapsed
    CLOSED ─────────────────────────────────────────▶ OPEN ──────────────────────▶ HALF_OPEN
       ▲          (break = cooldown)                   ▲                            │ ≤ P probes
       │                                               │  any probe failed          │
       │                                               └──(break doubles, up to ────┤
       │                                                   cooldown_max)            │
       └──────────── P probes succeeded (window emptied, break back to cooldown) ───┘

F is ``failure_threshold``, P is ``half_open_probes``. A call slower than ``slow_call`` seconds
counts as a failure in both modes (its caller still gets its response). While OPEN every caller
gets ``CircuitBreakerOpenError`` with the time left; in HALF_OPEN at most P probes are let
through, never more than P in flight, and every other caller is rejected at once. A probe that
is cancelled or ends without a verdict frees its slot for the next caller.

Records are immutable values in a :class:`StateStore`, changed by one atomic update each, so
the same machine works over a shared store. The failure-rate window is a ring of
``_BUCKETS`` time buckets kept in the record (constant memory per key); it slides one bucket
(``window / _BUCKETS`` seconds) at a time. Every transition is emitted as a ``BreakerEvent``.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, Literal, NamedTuple

import httpx
from returns.result import Success

from .._args import need_callable
from .._context import get_context, upstream_of
from .._errors import (
    CircuitBreakerOpenError,
    ClientStatusError,
    ConfigError,
    MaxRetriesExceededError,
    RequestError,
    RequestTimeoutError,
    ServerStatusError,
    TransportError,
)
from .._events import BreakerEvent, CircuitState, emit, rejected
from .._result import Next, Outcome
from .._settings import HttpSettings
from ..state import MemoryStore, StateStore

__all__ = ["BreakerRecord", "CircuitBreaker", "Verdict", "default_is_failure"]

Verdict = Literal["failure", "success", "neutral"]
"""How one outcome counts: against the upstream, for it, or not at all."""

_TOO_MANY_REQUESTS = 429
_BUCKETS = 10
_EMPTY: tuple[int, ...] = (0,) * _BUCKETS
_CLOSED_STATE = CircuitState.CLOSED
_HALF_OPEN = CircuitState.HALF_OPEN
_OPEN = CircuitState.OPEN
_MONOTONIC = time.monotonic  # the default clock (a store's own clock replaces it)


class BreakerRecord(NamedTuple):
    """The breaker's state for one key (a named tuple: one is built per counted call).

    Attributes:
        state: CLOSED, OPEN or HALF_OPEN.
        failures: consecutive failures counted while CLOSED.
        opened_at: clock value when the circuit last opened.
        trips: how many times the circuit has opened; outcomes of calls admitted under an
            older value are ignored.
        streak: trips since the circuit last closed, minus one: the break is
            ``cooldown * 2**streak`` (capped).
        probes: half-open probes in flight.
        passed: half-open probes that succeeded.
        lease_until: clock value after which probe slots still taken count as abandoned.
        epoch: the newest window bucket (``int(clock * _BUCKETS / window)``).
        calls: calls per window bucket, a ring indexed by ``epoch % _BUCKETS``.
        fails: failures per window bucket.
        window_calls: ``sum(calls)``.
        window_fails: ``sum(fails)``.
    """

    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trips: int = 0
    streak: int = 0
    probes: int = 0
    passed: int = 0
    lease_until: float = 0.0
    epoch: int = 0
    calls: tuple[int, ...] = _EMPTY
    fails: tuple[int, ...] = _EMPTY
    window_calls: int = 0
    window_fails: int = 0


_CLOSED = BreakerRecord()
_new_tuple = tuple.__new__


class _Ticket(NamedTuple):
    """A caller let through while the record was not CLOSED."""

    probe: bool  # False: the circuit had closed meanwhile, count it as a closed call
    trips: int
    event: BreakerEvent | None


def default_is_failure(error: RequestError, *, count_429: bool = False) -> bool:
    """Whether ``error`` counts against the upstream.

    Transport errors, timeouts and 5xx count (429 when ``count_429``); other 4xx never do,
    nor does an error that is the caller's or the environment's (``counts_against_upstream``
    is false: an invalid request, a failed token provider, a closed event loop).
    """
    if not error.counts_against_upstream:
        return False
    if isinstance(error, TransportError | RequestTimeoutError | ServerStatusError):
        return True
    return (
        count_429
        and isinstance(error, ClientStatusError)
        and error.status_code == _TOO_MANY_REQUESTS
    )


class CircuitBreaker:
    """Fail fast while an upstream is down; let a few probes find out when it is back.

    Put it inside ``Retry`` (retry outside, breaker inside): the breaker then counts single
    attempts and an open circuit ends the remaining retries at once. Placed outside ``Retry`` it
    still works: a ``MaxRetriesExceededError`` is judged by its last attempt.

    It opens on ``failure_threshold`` consecutive failures (a full outage is caught after a
    handful of calls) and, when ``failure_ratio`` is set, also when the failures over the last
    ``window`` seconds reach that ratio of at least ``min_throughput`` calls (a partial outage,
    which never produces a long run of failures). After the break (``cooldown``) up to
    ``half_open_probes`` probes are let through: the circuit closes when that many have
    succeeded and re-opens on any probe failure. With ``cooldown_max`` set (as
    :meth:`from_settings` does), each re-opening doubles the break up to ``cooldown_max``, and
    closing resets it to ``cooldown``.

    What counts: failures are decided by ``is_failure`` (default: transport errors, timeouts,
    5xx, and 429 when ``count_429``), plus any call slower than ``slow_call`` seconds. Any other
    response proves the upstream is alive and counts as a success. Errors raised before the
    upstream was reached (an open breaker further in, an invalid request, an auth failure) count
    as neither.

    Args:
        failure_threshold: consecutive failures that open the circuit.
        cooldown: seconds the circuit stays open after it opens from CLOSED.
        cooldown_max: the longest break: each re-opening after a failed probe doubles the
            break, up to this. ``None`` (the constructor's default): the break never grows.
        failure_ratio: failure-rate mode: open when failures/calls over the window reach this
            (0 < ratio <= 1); ``None`` turns the mode off.
        window: seconds of calls the failure ratio is computed over.
        min_throughput: calls the window must hold before the ratio can open the circuit.
        slow_call: calls taking longer than this many seconds count as failures (``None``: off).
        half_open_probes: probes let through per half-open period, and successes needed to close.
        probe_lease: seconds a probe may hold its half-open slot. A probe always gives its slot
            back, even when cancelled; but with a store shared by several processes, a process
            that dies mid-probe cannot, and every caller would be turned away for good. A slot
            held longer than this goes to the next caller. Keep it above the longest a call can
            take (``from_settings``: twice ``timeout_total``, at least 120 s).
        key: the per-request key the state is kept under (default: the URL origin, or the
            context's ``upstream``).
        count_429: count 429 Too Many Requests as a failure.
        is_failure: replaces the default failure test.
        store: where records live (default: a private in-memory store keeping at most
            10,000 upstreams; beyond that it forgets the records written least recently,
            never an open circuit within its break: see :meth:`forgettable`). Breakers sharing
            a store should share their options too. Outcomes go through the store's
            ``record`` when it has one (an ``update`` that must land even when late).
        clock: monotonic clock, injectable for tests. Left at its default, a store that
            offers ``clock()`` (a shared one: ``RedisStore``) gives the clock instead, so that
            processes on different hosts agree on when a circuit opened.

    Example:
        >>> stack = [Retry(), CircuitBreaker(failure_ratio=0.5, slow_call=10)]  # doctest: +SKIP
    """

    name = "circuit_breaker"

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        cooldown_max: float | None = None,
        failure_ratio: float | None = None,
        window: float = 30.0,
        min_throughput: int = 100,
        slow_call: float | None = None,
        half_open_probes: int = 1,
        probe_lease: float = 120.0,
        key: Callable[[httpx.Request], str] | None = None,
        count_429: bool = False,
        is_failure: Callable[[RequestError], bool] | None = None,
        store: StateStore[BreakerRecord] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_int("failure_threshold", failure_threshold)
        _check_int("min_throughput", min_throughput)
        _check_int("half_open_probes", half_open_probes)
        _check_positive("cooldown", cooldown)
        _check_positive("window", window)
        _check_positive("probe_lease", probe_lease)
        if slow_call is not None:
            _check_positive("slow_call", slow_call)
        if failure_ratio is not None and not (
            isinstance(failure_ratio, int | float)
            and not isinstance(failure_ratio, bool)
            and 0 < failure_ratio <= 1
        ):
            raise ConfigError(
                f"CircuitBreaker(failure_ratio=...) must be None or a number in (0, 1], "
                f"got {failure_ratio!r}"
            )
        if cooldown_max is not None:
            _check_positive("cooldown_max", cooldown_max)
        if cooldown_max is not None and cooldown > cooldown_max:
            raise ConfigError(
                f"CircuitBreaker(cooldown=...) must be <= cooldown_max ({cooldown_max!r}), "
                f"got {cooldown!r}"
            )
        for label, value in (("key", key), ("is_failure", is_failure), ("clock", clock)):
            need_callable("CircuitBreaker", label, value, optional=True)
        if store is not None and not (
            isinstance(store, StateStore)
            and inspect.iscoroutinefunction(store.get)
            and inspect.iscoroutinefunction(store.update)
        ):
            raise ConfigError(
                f"CircuitBreaker(store=...) must implement StateStore (async get, async update), "
                f"got {store!r}"
            )
        self.failure_threshold = failure_threshold
        self.cooldown = float(cooldown)
        self.cooldown_max = self.cooldown if cooldown_max is None else float(cooldown_max)
        self.failure_ratio = None if failure_ratio is None else float(failure_ratio)
        self.window = float(window)
        self.min_throughput = min_throughput
        self.slow_call = None if slow_call is None else float(slow_call)
        self.half_open_probes = half_open_probes
        self.probe_lease = float(probe_lease)
        self.count_429 = bool(count_429)
        self.store: StateStore[BreakerRecord] = (
            store if store is not None else MemoryStore(evictable=self.forgettable)
        )
        if isinstance(store, MemoryStore) and store.evictable is None:
            store.evictable = self.forgettable  # never forget an open circuit early
        self._key = key or upstream_of
        self._is_failure = is_failure
        shared_clock = getattr(self.store, "clock", None)
        if clock is _MONOTONIC and callable(shared_clock):
            clock = shared_clock  # a store shared by hosts: one clock for all (RedisStore)
        self._clock = clock
        # Outcomes are written with the store's ``record`` when it has one: an update that
        # lands even when the store answers late (``RedisStore``), so no failure seen is lost.
        recorder = getattr(self.store, "record", None)
        self._record = recorder if inspect.iscoroutinefunction(recorder) else self.store.update
        # A half-open probe slot is taken with the store's ``try_update`` when it has one: a
        # shared store that answers late then decides nothing, and the caller is turned away
        # (a slot granted on a stale copy would be a second probe in another process).
        # Consecutive counts go through the store's ``record_count`` when it has one: one
        # server-side step per outcome (RedisStore), the same count as ``_counted``.
        counter = getattr(self.store, "record_count", None)
        self._record_count = (
            counter if self.failure_ratio is None and inspect.iscoroutinefunction(counter) else None
        )
        trier = getattr(self.store, "try_update", None)
        self._try_update = trier if inspect.iscoroutinefunction(trier) else None
        self._per_second = _BUCKETS / self.window  # window buckets per second
        self._plain = self.failure_ratio is None and self.slow_call is None
        # An in-process store is read without an await (no coroutine per read).
        # (Not a subclass: one may override ``get``.)
        chosen = self.store
        self._peek = (
            chosen.peek if isinstance(chosen, MemoryStore) and type(chosen) is MemoryStore else None
        )

    @classmethod
    def from_settings(cls, settings: HttpSettings, **overrides: Any) -> CircuitBreaker:
        """A breaker configured from ``settings`` (keyword arguments win)."""
        options: dict[str, Any] = {
            "failure_threshold": settings.circuit_breaker_threshold,
            "cooldown": settings.circuit_breaker_cooldown,
            "cooldown_max": settings.circuit_breaker_cooldown_max,
            "failure_ratio": settings.circuit_breaker_failure_ratio,
            "window": settings.circuit_breaker_window,
            "min_throughput": settings.circuit_breaker_min_throughput,
            "slow_call": settings.circuit_breaker_slow_call,
            "half_open_probes": settings.circuit_breaker_half_open_probes,
            "probe_lease": max(120.0, 2 * settings.timeout_total),
        }
        options.update(overrides)
        return cls(**options)

    def __repr__(self) -> str:
        text = (
            f"CircuitBreaker(failure_threshold={self.failure_threshold}, cooldown={self.cooldown}"
        )
        text += f", cooldown_max={self.cooldown_max}"
        if self.failure_ratio is not None:
            text += f", failure_ratio={self.failure_ratio}, window={self.window}"
            text += f", min_throughput={self.min_throughput}"
        if self.slow_call is not None:
            text += f", slow_call={self.slow_call}"
        return text + f", half_open_probes={self.half_open_probes})"

    def key_of(self, request: httpx.Request) -> str:
        """The key ``request``'s state is kept under (what :meth:`state` takes)."""
        return self._key(request)

    def forgettable(self, record: BreakerRecord) -> bool:
        """Whether a bounded store may drop ``record`` (its key then reads CLOSED again).

        A CLOSED record may go (it loses at most a run of fewer than ``failure_threshold``
        failures, or a window of counts), and so may an OPEN one whose break is over (its next
        caller would have been let through as a probe anyway). An OPEN circuit within its break
        and a HALF_OPEN one whose probes hold their lease are kept.
        """
        state = record.state
        if state is _CLOSED_STATE:
            return True
        now = self._clock()
        if state is _OPEN:
            return now - record.opened_at >= self.break_for(record.streak)
        return record.probes == 0 or now >= record.lease_until

    async def state(self, key: str) -> CircuitState:
        """The current state for ``key`` (an OPEN circuit past its break reads HALF_OPEN)."""
        record = await self.store.get(key) or _CLOSED
        if record.state is _OPEN and self._clock() - record.opened_at >= self.break_for(
            record.streak
        ):
            return _HALF_OPEN
        return record.state

    async def retry_in(self, key: str) -> float | None:
        """Seconds until an OPEN circuit for ``key`` lets a probe through (``0.0`` once its
        break is over); ``None`` when it is not OPEN."""
        record = await self.store.get(key) or _CLOSED
        if record.state is not _OPEN:
            return None
        return max(0.0, record.opened_at + self.break_for(record.streak) - self._clock())

    def break_for(self, streak: int) -> float:
        """Seconds the circuit stays open on trip ``streak`` (0-based) since it last closed."""
        return min(self.cooldown * 2.0 ** min(streak, 64), self.cooldown_max)

    def verdict(self, outcome: Outcome) -> Verdict:
        """How ``outcome`` counts for the breaker (not counting its duration)."""
        if isinstance(outcome, Success):
            return "success"
        error = outcome.failure()
        if isinstance(error, MaxRetriesExceededError):
            error = error.last
        if not error.counts_against_upstream:
            return "neutral"  # the caller's or the environment's: says nothing of the upstream
        if self._is_failure is not None:
            failed = self._is_failure(error)
        else:
            failed = default_is_failure(error, count_429=self.count_429)
        if failed:
            return "failure"
        return "success" if isinstance(error, ClientStatusError) else "neutral"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        key = self._key(request)
        peek = self._peek
        record = peek(key) if peek is not None else await self.store.get(key)
        if record is None:
            trips = 0
        elif record.state is _CLOSED_STATE:
            trips = record.trips  # the generation this call is admitted under
        else:
            admitted = await self._admission(key, record)
            if isinstance(admitted, float):
                refused = CircuitBreakerOpenError(
                    upstream=key, retry_after=admitted, request=request
                )
                return rejected(request, key, "open_circuit", refused)
            if admitted.event is not None:
                _announce(request, key, admitted.event)
            if admitted.probe:
                return await self._probe(request, call_next, key, admitted.trips)
            trips = admitted.trips  # it closed meanwhile

        if self._plain:
            # Hot path of consecutive mode: no write unless the outcome changes the count.
            outcome = await call_next(request)
            verdict = "success" if isinstance(outcome, Success) else self.verdict(outcome)
            if verdict == "failure":
                await self._count(request, key, trips, failed=True)
            elif verdict == "success":
                # Read again: other calls may have failed while this one was in flight.
                current = peek(key) if peek is not None else await self.store.get(key)
                if current is not None and current.failures and current.trips == trips:
                    await self._count(request, key, trips, failed=False)
            return outcome

        slow_call = self.slow_call
        start = 0.0 if slow_call is None else self._clock()
        outcome = await call_next(request)
        verdict = "success" if isinstance(outcome, Success) else self.verdict(outcome)
        if verdict == "neutral":
            return outcome
        now = self._clock()
        failed = verdict == "failure" or (slow_call is not None and now - start > slow_call)
        if self.failure_ratio is None:
            if failed:
                await self._count(request, key, trips, failed=True)
            else:
                await self._reset(request, key, trips)
            return outcome
        # Failure-rate mode: every counted outcome is one write (the window counts successes).
        # (partial, not a lambda: a closure would turn this frame's variables into cells.)
        event = await self._record(key, partial(self._counted, failed, now, trips))
        if event is not None:
            _announce(request, key, event)
        return outcome

    async def _reset(self, request: httpx.Request, key: str, trips: int) -> None:
        """A success in consecutive mode: clear the failure count if there is one."""
        # Read again: other calls may have failed while this one was in flight.
        peek = self._peek
        current = peek(key) if peek is not None else await self.store.get(key)
        if current is not None and current.failures and current.trips == trips:
            await self._count(request, key, trips, failed=False)

    async def _count(self, request: httpx.Request, key: str, trips: int, *, failed: bool) -> None:
        now = self._clock()
        change = partial(self._counted, failed, now, trips)
        counter = self._record_count
        if counter is None:
            event = await self._record(key, change)
        else:
            threshold = self.failure_threshold
            event = await counter(
                key, change, failed=failed, trips=trips, threshold=threshold, now=now
            )
        if event is not None:
            _announce(request, key, event)

    def _counted(
        self, failed: bool, now: float, trips: int, record: BreakerRecord | None
    ) -> tuple[BreakerRecord, BreakerEvent | None]:
        """The record after one counted outcome of a call admitted while CLOSED."""
        current = record or _CLOSED
        state, failures, _, was, _, _, _, _, epoch, calls, fails, n_calls, n_fails = current
        if state is not _CLOSED_STATE or was != trips:
            return current, None  # a late outcome from before the circuit last opened
        failures = failures + 1 if failed else 0
        ratio = self.failure_ratio
        if ratio is None:
            if failures < self.failure_threshold:
                return current._replace(failures=failures), None
            return self._trip(current, now, f"{failures} consecutive failures", None, None)
        now_epoch = int(now * self._per_second)
        if now_epoch > epoch:  # slide: empty the buckets that fell out of the window
            if now_epoch - epoch >= _BUCKETS:
                calls, fails, n_calls, n_fails = _EMPTY, _EMPTY, 0, 0
            else:
                calls_list, fails_list = list(calls), list(fails)
                for stale in range(epoch + 1, now_epoch + 1):
                    i = stale % _BUCKETS
                    n_calls -= calls_list[i]
                    n_fails -= fails_list[i]
                    calls_list[i] = fails_list[i] = 0
                calls, fails = tuple(calls_list), tuple(fails_list)
            epoch = now_epoch
        i = epoch % _BUCKETS
        bucket = list(calls)
        bucket[i] += 1
        calls = tuple(bucket)
        n_calls += 1
        if failed:
            bucket = list(fails)
            bucket[i] += 1
            fails = tuple(bucket)
            n_fails += 1
        if failures >= self.failure_threshold:
            reason = f"{failures} consecutive failures"
        elif n_calls >= self.min_throughput and n_fails / n_calls >= ratio:
            reason = (
                f"failure ratio {n_fails / n_calls:.2f} over {n_calls} calls in {self.window:g}s"
            )
        else:
            # tuple.__new__ skips the named tuple's keyword-handling __new__ (hot path).
            fields = (_CLOSED_STATE, failures, 0.0, trips, 0, 0, 0, 0.0, epoch, calls, fails, n_calls, n_fails)  # fmt: skip  # noqa: E501
            return _new_tuple(BreakerRecord, fields), None
        return self._trip(current, now, reason, n_fails / n_calls, n_calls)

    def _trip(
        self,
        current: BreakerRecord,
        now: float,
        reason: str,
        observed: float | None,
        calls: int | None,
    ) -> tuple[BreakerRecord, BreakerEvent]:
        opened = BreakerRecord(state=_OPEN, opened_at=now, trips=current.trips + 1)
        event = BreakerEvent(
            "",
            _CLOSED_STATE,
            _OPEN,
            reason,
            failure_ratio=observed,
            calls=calls,
            cooldown=self.break_for(0),
        )
        return opened, event

    async def _admission(self, key: str, seen: BreakerRecord) -> _Ticket | float:
        """A ticket for a caller while the circuit is not closed, or the seconds to wait."""
        trier = self._try_update
        if trier is None:
            return await self.store.update(key, self._admit)
        done = await trier(key, self._admit, self._give_back)
        if done is not None:
            ticket: _Ticket | float = done[0]
            return ticket
        # The shared state did not answer in time: no probe on a stale copy.
        decided = self._admit(seen)[1]
        return max(decided, 0.0) if isinstance(decided, float) else 0.0

    def _admit(self, record: BreakerRecord | None) -> tuple[BreakerRecord, _Ticket | float]:
        """Decide on a caller while the circuit is not closed: a ticket, or the retry-after."""
        now = self._clock()
        current = record or _CLOSED
        if current.state is _CLOSED_STATE:
            return current, _Ticket(False, current.trips, None)
        if current.state is _OPEN:
            pause = self.break_for(current.streak)
            remaining = current.opened_at + pause - now
            if remaining > 0:
                return current, remaining
            event = BreakerEvent("", _OPEN, _HALF_OPEN, f"cooldown of {pause:g}s elapsed")
            lease = now + self.probe_lease
            probing = current._replace(state=_HALF_OPEN, probes=1, passed=0, lease_until=lease)
            return probing, _Ticket(True, current.trips, event)
        probes = current.probes + 1
        if current.probes + current.passed >= self.half_open_probes:
            if current.probes == 0 or now < current.lease_until:
                # The probes are taken; if one fails, the next break is this long.
                return current, self.break_for(current.streak + 1)
            # The probes in flight outlived their lease: whoever took them is gone (a process
            # that died mid-probe, with a shared store). This caller probes instead.
            probes = 1
        lease = max(current.lease_until, now + self.probe_lease)
        return current._replace(probes=probes, lease_until=lease), _Ticket(
            True, current.trips, None
        )

    async def _probe(
        self, request: httpx.Request, call_next: Next, key: str, trips: int
    ) -> Outcome:
        verdict: Verdict = "neutral"
        reason = "probe failed"
        start = self._clock()
        try:
            outcome = await call_next(request)
            verdict = self.verdict(outcome)
            took = self._clock() - start
            if verdict == "success" and self.slow_call is not None and took > self.slow_call:
                verdict, reason = "failure", f"probe too slow ({took:.3g}s > {self.slow_call:g}s)"
            return outcome
        finally:
            # Runs on cancellation too: the slot is freed and nothing else changes.
            now = self._clock()
            event = await self._record(key, lambda r: self._settle(r, verdict, reason, now, trips))
            if event is not None:
                _announce(request, key, event)

    def _give_back(self, record: BreakerRecord | None) -> tuple[BreakerRecord, BreakerEvent | None]:
        """A probe slot taken but never used (a shared store answered too late): freed."""
        current = record or _CLOSED
        return self._settle(current, "neutral", "", self._clock(), current.trips)

    def _settle(
        self, record: BreakerRecord | None, verdict: Verdict, reason: str, now: float, trips: int
    ) -> tuple[BreakerRecord, BreakerEvent | None]:
        current = record or _CLOSED
        if current.state is not _HALF_OPEN or current.trips != trips:
            return current, None  # another probe already decided this half-open period
        probes = max(current.probes - 1, 0)
        if verdict == "neutral":
            return current._replace(probes=probes), None
        if verdict == "success":
            passed = current.passed + 1
            if passed < self.half_open_probes:
                return current._replace(probes=probes, passed=passed), None
            closed = BreakerRecord(trips=current.trips, epoch=int(now * self._per_second))
            said = "probe succeeded" if passed == 1 else f"{passed} probes succeeded"
            return closed, BreakerEvent("", _HALF_OPEN, _CLOSED_STATE, said)
        streak = current.streak + 1
        reopened = BreakerRecord(state=_OPEN, opened_at=now, trips=current.trips + 1, streak=streak)
        pause = self.break_for(streak)
        event = BreakerEvent("", _HALF_OPEN, _OPEN, reason, cooldown=pause)
        return reopened, event


def _check_int(label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"CircuitBreaker({label}=...) must be an int >= 1, got {value!r}")


def _check_positive(label: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"CircuitBreaker({label}=...) must be a finite number > 0, got {value!r}")


def _announce(request: httpx.Request, key: str, event: BreakerEvent) -> None:
    observers = get_context(request).observers
    if observers:
        emit(observers, replace(event, upstream=key, request=request))
