"""Instrumentation events: frozen values that stages emit and observers (logging, metrics) read.

A stage emits with :func:`emit`; the observers are the ones the pipeline put in the request's
context, so no global registry is involved and two pipelines never see each other's events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

import httpx
from returns.result import Failure

from ._log import get_logger

if TYPE_CHECKING:
    from ._errors import RequestError

__all__ = [
    "BreakerEvent",
    "CircuitState",
    "Event",
    "HedgeEvent",
    "Observer",
    "RejectionEvent",
    "RetryEvent",
    "emit",
    "hedged",
    "rejected",
]

RejectionKind = Literal["open_circuit", "retry_budget", "rate_limit", "bulkhead"]
HedgeKind = Literal["sent", "won"]


class CircuitState(StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """An attempt failed and another one is scheduled after ``delay`` seconds."""

    request: httpx.Request
    attempt: int
    delay: float
    error: RequestError
    delay_source: str  # "backoff" | "retry-after" | "retry-after-ms" | "connection"


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """A circuit breaker changed state.

    Attributes:
        upstream: the breaker key (the upstream's origin by default).
        old: the state before.
        new: the state after.
        reason: why, in words (``"5 consecutive failures"``, ``"probe failed"``, ...).
        request: the request whose outcome or admission caused the change.
        failure_ratio: failures/calls in the breaker's window when it opened from CLOSED
            (failure-rate mode only).
        calls: calls in the breaker's window when it opened from CLOSED (failure-rate mode only).
        cooldown: seconds the circuit stays open (when ``new`` is OPEN).
    """

    upstream: str
    old: CircuitState
    new: CircuitState
    reason: str
    request: httpx.Request | None = None
    failure_ratio: float | None = None
    calls: int | None = None
    cooldown: float | None = None


@dataclass(frozen=True, slots=True)
class RejectionEvent:
    """A stage turned a request away before it reached the upstream.

    Attributes:
        request: the request refused.
        upstream: the key of the state that refused it (breaker, budget, limiter, bulkhead).
        kind: ``"open_circuit"``, ``"retry_budget"``, ``"rate_limit"`` or ``"bulkhead"``.
        error: the error the request ends with.
    """

    request: httpx.Request
    upstream: str
    kind: RejectionKind
    error: RequestError


@dataclass(frozen=True, slots=True)
class HedgeEvent:
    """``Hedge`` sent a copy of a slow request (``"sent"``) or a copy answered first (``"won"``)."""

    request: httpx.Request
    upstream: str
    kind: HedgeKind


Event = RetryEvent | BreakerEvent | RejectionEvent | HedgeEvent
Observer = Callable[[Event], None]

_log = get_logger("httprail.events")


def emit(observers: tuple[Observer, ...], event: Event) -> None:
    """Hand ``event`` to every observer; an observer that raises is logged and skipped."""
    for observer in observers:
        try:
            observer(event)
        except Exception as exc:  # noqa: BLE001 - user code must not break the request
            _log.error("httprail.observer_failed", observer=repr(observer), error=repr(exc))


def rejected(
    request: httpx.Request, upstream: str, kind: RejectionKind, error: RequestError
) -> Failure[RequestError]:
    """``Failure(error)``, after telling the request's observers that ``kind`` refused it."""
    observers = getattr(request.extensions.get("httprail"), "observers", ())
    if observers:
        emit(observers, RejectionEvent(request, upstream, kind, error))
    return Failure(error)


def hedged(request: httpx.Request, upstream: str, kind: HedgeKind) -> None:
    """Tell the request's observers that ``Hedge`` sent a copy of it or that a copy won."""
    observers = getattr(request.extensions.get("httprail"), "observers", ())
    if observers:
        emit(observers, HedgeEvent(request, upstream, kind))
