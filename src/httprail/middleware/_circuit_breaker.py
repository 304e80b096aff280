"""``CircuitBreaker``: stop calling an upstream that keeps failing, and probe it carefully.

The state machine per key (the upstream's origin by default)::

    CLOSED ──N consecutive failures──▶ OPEN ──cooldown elapsed──▶ HALF_OPEN (one probe)
       ▲                                 ▲                              │
       └──────────probe succeeded────────┼──────────────────────────────┤
                                         └────────probe failed──────────┘

In HALF_OPEN exactly one request (the probe) is let through; every other caller gets
``CircuitBreakerOpenError`` at once. A probe that is cancelled or ends without a verdict frees
its slot for the next caller. Records are immutable values in a :class:`StateStore`, changed by
one atomic update each, so the same machine works over a shared store.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx
from returns.result import Failure, Success

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
from .._events import BreakerEvent, CircuitState, emit
from .._result import Next, Outcome
from .._settings import HttpSettings
from ..state import MemoryStore, StateStore

__all__ = ["BreakerRecord", "CircuitBreaker", "Verdict", "default_is_failure"]

Verdict = Literal["failure", "success", "neutral"]
"""How one outcome counts: against the upstream, for it, or not at all."""

_TOO_MANY_REQUESTS = 429


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """The breaker's state for one key.

    Attributes:
        state: CLOSED, OPEN or HALF_OPEN.
        failures: consecutive failures counted while CLOSED.
        opened_at: clock value when the circuit last opened.
        probing: a half-open probe is in flight.
        trips: how many times the circuit has opened.
    """

    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False
    trips: int = 0


_CLOSED = BreakerRecord()


def default_is_failure(error: RequestError, *, count_429: bool = False) -> bool:
    """Whether ``error`` counts against the upstream.

    Transport errors, timeouts and 5xx count (429 when ``count_429``); other 4xx never do.
    """
    if isinstance(error, TransportError | RequestTimeoutError | ServerStatusError):
        return True
    return (
        count_429
        and isinstance(error, ClientStatusError)
        and error.status_code == _TOO_MANY_REQUESTS
    )


class CircuitBreaker:
    """Fail fast while an upstream is down; let one probe find out when it is back.

    Put it inside ``Retry`` (retry outside, breaker inside): the breaker then counts single
    attempts and an open circuit ends the remaining retries at once. Placed outside ``Retry`` it
    still works: a ``MaxRetriesExceededError`` is judged by its last attempt.

    What counts: failures are decided by ``is_failure`` (default: transport errors, timeouts,
    5xx, and 429 when ``count_429``). Any other response proves the upstream is alive and counts
    as a success. Errors raised before the upstream was reached (an open breaker further in, an
    invalid request, an auth failure) count as neither.

    Args:
        failure_threshold: consecutive failures that open the circuit.
        cooldown: seconds the circuit stays open before one probe is admitted.
        key: the per-request key the state is kept under (default: the URL origin, or the
            context's ``upstream``).
        count_429: count 429 Too Many Requests as a failure.
        is_failure: replaces the default failure test.
        store: where records live (default: a private in-memory store).
        clock: monotonic clock, injectable for tests.

    Example:
        >>> stack = [Retry(), CircuitBreaker(failure_threshold=5, cooldown=30)]  # doctest: +SKIP
    """

    name = "circuit_breaker"

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        key: Callable[[httpx.Request], str] | None = None,
        count_429: bool = False,
        is_failure: Callable[[RequestError], bool] | None = None,
        store: StateStore[BreakerRecord] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            isinstance(failure_threshold, bool)
            or not isinstance(failure_threshold, int)
            or failure_threshold < 1
        ):
            raise ConfigError(
                f"CircuitBreaker(failure_threshold=...) must be an int >= 1, "
                f"got {failure_threshold!r}"
            )
        if (
            isinstance(cooldown, bool)
            or not isinstance(cooldown, int | float)
            or not math.isfinite(cooldown)
            or cooldown <= 0
        ):
            raise ConfigError(
                f"CircuitBreaker(cooldown=...) must be a finite number > 0, got {cooldown!r}"
            )
        for label, value in (("key", key), ("is_failure", is_failure), ("clock", clock)):
            if value is not None and not callable(value):
                raise ConfigError(f"CircuitBreaker({label}=...) must be callable, got {value!r}")
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
        self.count_429 = bool(count_429)
        self.store: StateStore[BreakerRecord] = store if store is not None else MemoryStore()
        self._key = key or upstream_of
        self._is_failure = is_failure
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: HttpSettings, **overrides: Any) -> CircuitBreaker:
        """A breaker configured from ``settings`` (keyword arguments win)."""
        options: dict[str, Any] = {
            "failure_threshold": settings.circuit_breaker_threshold,
            "cooldown": settings.circuit_breaker_cooldown,
        }
        options.update(overrides)
        return cls(**options)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(failure_threshold={self.failure_threshold}, cooldown={self.cooldown})"
        )

    async def state(self, key: str) -> CircuitState:
        """The current state for ``key`` (an OPEN circuit past its cooldown reads HALF_OPEN)."""
        record = await self.store.get(key) or _CLOSED
        if record.state is CircuitState.OPEN and self._clock() - record.opened_at >= self.cooldown:
            return CircuitState.HALF_OPEN
        return record.state

    def verdict(self, outcome: Outcome) -> Verdict:
        """How ``outcome`` counts for the breaker."""
        if isinstance(outcome, Success):
            return "success"
        error = outcome.failure()
        if isinstance(error, MaxRetriesExceededError):
            error = error.last
        if self._is_failure is not None:
            failed = self._is_failure(error)
        else:
            failed = default_is_failure(error, count_429=self.count_429)
        if failed:
            return "failure"
        return "success" if isinstance(error, ClientStatusError) else "neutral"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        key = self._key(request)
        record = await self.store.get(key)
        if record is None or record.state is CircuitState.CLOSED:
            # Hot path: closed circuit, no write unless the outcome changes the count.
            outcome = await call_next(request)
            verdict = self.verdict(outcome)
            if verdict == "failure":
                await self._record_closed(request, key, verdict)
            elif verdict == "success":
                # Read again: other calls may have failed while this one was in flight.
                current = await self.store.get(key)
                if current is not None and current.failures:
                    await self._record_closed(request, key, verdict)
            return outcome

        admitted = await self.store.update(key, self._admit)
        if isinstance(admitted, float):
            return Failure(
                CircuitBreakerOpenError(upstream=key, retry_after=admitted, request=request)
            )
        if admitted is not None:
            _announce(request, key, admitted)
        return await self._probe(request, call_next, key)

    async def _probe(self, request: httpx.Request, call_next: Next, key: str) -> Outcome:
        verdict: Verdict = "neutral"
        try:
            outcome = await call_next(request)
            verdict = self.verdict(outcome)
            return outcome
        finally:
            # Runs on cancellation too: the slot is freed and nothing else changes.
            now = self._clock()
            event = await self.store.update(key, lambda r: _settle_probe(r, verdict, now))
            if event is not None:
                _announce(request, key, event)

    def _admit(
        self, record: BreakerRecord | None
    ) -> tuple[BreakerRecord, BreakerEvent | float | None]:
        """Decide on a caller while the circuit is not closed.

        Returns the new record and either a retry-after (rejected), a transition event (this
        caller is the probe and the circuit just went half-open) or ``None`` (admitted).
        """
        now = self._clock()
        current = record or _CLOSED
        if current.state is CircuitState.CLOSED:
            return current, None
        if current.state is CircuitState.OPEN:
            remaining = current.opened_at + self.cooldown - now
            if remaining > 0:
                return current, remaining
            event = BreakerEvent(
                upstream="",
                old=CircuitState.OPEN,
                new=CircuitState.HALF_OPEN,
                reason="cooldown elapsed",
            )
            return replace(current, state=CircuitState.HALF_OPEN, probing=True), event
        if current.probing:
            return current, self.cooldown
        return replace(current, probing=True), None

    async def _record_closed(self, request: httpx.Request, key: str, verdict: Verdict) -> None:
        now = self._clock()
        threshold = self.failure_threshold

        def change(record: BreakerRecord | None) -> tuple[BreakerRecord, BreakerEvent | None]:
            current = record or _CLOSED
            if current.state is not CircuitState.CLOSED:
                return current, None  # a late outcome from before the circuit opened
            if verdict == "success":
                return replace(current, failures=0), None
            failures = current.failures + 1
            if failures < threshold:
                return replace(current, failures=failures), None
            opened = BreakerRecord(state=CircuitState.OPEN, opened_at=now, trips=current.trips + 1)
            reason = f"{failures} consecutive failures"
            return opened, BreakerEvent(key, CircuitState.CLOSED, CircuitState.OPEN, reason)

        event = await self.store.update(key, change)
        if event is not None:
            _announce(request, key, event)


def _announce(request: httpx.Request, key: str, event: BreakerEvent) -> None:
    observers = get_context(request).observers
    if observers:
        emit(observers, replace(event, upstream=key, request=request))


def _settle_probe(
    record: BreakerRecord | None, verdict: Verdict, now: float
) -> tuple[BreakerRecord, BreakerEvent | None]:
    current = record or _CLOSED
    if current.state is not CircuitState.HALF_OPEN:
        return current, None
    if verdict == "success":
        closed = BreakerRecord(trips=current.trips)
        return closed, BreakerEvent(
            "", CircuitState.HALF_OPEN, CircuitState.CLOSED, "probe succeeded"
        )
    if verdict == "failure":
        reopened = BreakerRecord(state=CircuitState.OPEN, opened_at=now, trips=current.trips + 1)
        return reopened, BreakerEvent("", CircuitState.HALF_OPEN, CircuitState.OPEN, "probe failed")
    return replace(current, probing=False), None
