"""The instruments of the ``OpenTelemetry`` stage, created on one OpenTelemetry ``Meter``.

The aggregation (histogram buckets, sums, export) is the SDK's: this module only records.
Two instruments are observed rather than recorded: ``httprail.attempts`` and
``http.client.active_requests`` change on every attempt, and one synchronous ``add`` costs the
SDK some 67k instructions (attribute cleaning, hashing, exemplar filter, a lock), so they are
kept as plain counts under a lock here and read by the SDK when it collects (same values, no
exemplars).
``docs/observability.md`` lists every instrument with its unit and attributes:
``http.client.request.duration``, ``http.client.active_requests`` (one per physical attempt),
``httprail.request.duration`` (logical requests), ``httprail.attempts``, ``httprail.retries``,
``httprail.rejections``, ``httprail.breaker.transitions``, ``httprail.breaker.state`` and
``httprail.hedges``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._context import upstream_of
from .._events import BreakerEvent, CircuitState, Event, HedgeEvent, RejectionEvent, RetryEvent
from ._otel_semconv import DURATION_BUCKETS, error_type

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

__all__ = ["Instruments", "Tally"]

_STATES = tuple(CircuitState)


class Tally:
    """Counts by attribute set, read by an observable instrument's callback. The key is the
    attribute set itself, as a tuple of ``(name, value)`` pairs. Thread-safe: one stage may
    serve clients on several event loops."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[tuple[str, Any], ...], int] = {}

    def add(self, key: tuple[tuple[str, Any], ...], amount: int) -> None:
        """Add ``amount`` to the count of the attribute set ``key``."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount

    def observe(self, observation: type[Observation]) -> list[Observation]:
        """One observation per attribute set seen so far."""
        with self._lock:
            counts = list(self._counts.items())
        return [observation(count, dict(key)) for key, count in counts]


OTHER = "_OTHER"
"""The upstream (and server address) of every upstream past ``max_upstreams`` in metrics."""


class Instruments:
    """Every instrument the stage records to, and the breaker states it last heard of.

    Metric attributes are bounded: the first ``max_upstreams`` upstreams have series of their
    own, later ones share one, with ``httprail.upstream`` and ``server.address`` set to
    :data:`OTHER` (and no ``server.port``), so a client calling ever new hosts (a crawler, a
    webhook sender) does not grow the series, and the SDK's memory, without bound. Spans keep
    every attribute: they are exported, not kept.
    """

    __slots__ = (
        "_observation",
        "_upstreams",
        "active",
        "attempts",
        "breaker_states",
        "calls",
        "duration",
        "hedges",
        "max_upstreams",
        "rejections",
        "retries",
        "transitions",
    )

    def __init__(self, meter: Meter, max_upstreams: int = 1000) -> None:
        from opentelemetry.metrics import Observation

        self._observation = Observation
        self.max_upstreams = max_upstreams
        self._upstreams: set[str] = set()  # those with series of their own
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (one per physical attempt).",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.active = Tally()
        meter.create_observable_up_down_counter(
            "http.client.active_requests",
            callbacks=[self._observe_active],
            unit="{request}",
            description="Number of outstanding HTTP client requests (attempts in flight).",
        )
        self.calls = meter.create_histogram(
            "httprail.request.duration",
            unit="s",
            description="Duration of logical requests, every retry, wait and hedge included.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.attempts = Tally()
        meter.create_observable_counter(
            "httprail.attempts",
            callbacks=[self._observe_attempts],
            unit="{attempt}",
            description="Physical attempts sent, by kind (first, retry, hedge).",
        )
        self.retries = meter.create_counter(
            "httprail.retries",
            unit="{retry}",
            description="Retries scheduled, by the failed attempt's error.type and delay source.",
        )
        self.rejections = meter.create_counter(
            "httprail.rejections",
            unit="{request}",
            description="Requests turned away before the upstream (open circuit, retry "
            "budget, rate limit, bulkhead).",
        )
        self.transitions = meter.create_counter(
            "httprail.breaker.transitions",
            unit="{transition}",
            description="Circuit breaker state changes.",
        )
        self.hedges = meter.create_counter(
            "httprail.hedges",
            unit="{request}",
            description="Hedged copies sent, and those that answered first.",
        )
        self.breaker_states: dict[str, CircuitState] = {}
        meter.create_observable_gauge(
            "httprail.breaker.state",
            callbacks=[self._observe_breakers],
            description="1 for each upstream's current circuit state, 0 for the other states.",
        )

    def _own(self, upstream: str) -> bool:
        """Whether ``upstream`` has series of its own (taking a place while there is room)."""
        known = self._upstreams
        if upstream in known:
            return True
        if len(known) < self.max_upstreams:
            known.add(upstream)
            return True
        return False

    def upstream(self, upstream: str) -> str:
        """``upstream`` as metrics name it: itself, or :data:`OTHER` past ``max_upstreams``."""
        return upstream if self._own(upstream) else OTHER

    def attributes(self, attributes: dict[str, Any], upstream: str) -> dict[str, Any]:
        """``attributes`` (of a request to ``upstream``) as metrics record them: the same
        dict, or a copy naming :data:`OTHER` for the server past ``max_upstreams``."""
        if self._own(upstream):
            return attributes
        folded = dict(attributes)
        folded["server.address"] = OTHER
        folded.pop("server.port", None)
        if "httprail.upstream" in folded:
            folded["httprail.upstream"] = OTHER
        return folded

    def _observe_active(self, options: CallbackOptions) -> Iterable[Observation]:
        return self.active.observe(self._observation)

    def _observe_attempts(self, options: CallbackOptions) -> Iterable[Observation]:
        return self.attempts.observe(self._observation)

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        observation = self._observation
        return [
            observation(
                int(state is current),
                {"httprail.upstream": upstream, "httprail.breaker.state": state.value},
            )
            for upstream, current in list(self.breaker_states.items())
            for state in _STATES
        ]

    def record(self, event: Event) -> None:
        """Count what ``event`` says."""
        if isinstance(event, RetryEvent):
            attributes: dict[str, Any] = {
                "httprail.upstream": self.upstream(upstream_of(event.request)),
                "httprail.retry.cause": error_type(event.error),
                "httprail.retry.delay_source": event.delay_source,
            }
            self.retries.add(1, attributes)
        elif isinstance(event, RejectionEvent):
            attributes = {
                "httprail.upstream": self.upstream(event.upstream),
                "httprail.rejection.kind": event.kind,
            }
            self.rejections.add(1, attributes)
        elif isinstance(event, BreakerEvent):
            upstream = self.upstream(event.upstream)
            self.breaker_states[upstream] = event.new
            attributes = {
                "httprail.upstream": upstream,
                "httprail.breaker.from": event.old.value,
                "httprail.breaker.to": event.new.value,
            }
            self.transitions.add(1, attributes)
        elif isinstance(event, HedgeEvent):
            upstream = self.upstream(event.upstream)
            attributes = {"httprail.upstream": upstream, "httprail.hedge.kind": event.kind}
            self.hedges.add(1, attributes)
