"""``OpenTelemetry``: a CLIENT span per logical request and per physical attempt, and metrics.

The stage opens the logical span where it sits in the chain (outermost, usually) and, through
:meth:`OpenTelemetry.wrap_send`, which the :class:`~httprail.Pipeline` applies once when it is
built, one child span around every call of the terminal: each retry and each hedge is an attempt
span of its own, with ``http.request.resend_count``. A pipeline without this stage runs exactly
the code it ran before (nothing is looked up per request).

Only ``opentelemetry-api`` is imported, and only when the stage is built: without an SDK the
API's no-op tracer and meter are used. ``pip install 'httprail[otel]'`` brings the API, the SDK
and the Prometheus exporter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from .._context import upstream_of
from .._errors import ConfigError
from .._events import BreakerEvent, Event, HedgeEvent, RejectionEvent, RetryEvent
from .._result import Next, Outcome
from .._version import __version__
from ._hedge import HEDGE_EXTENSION
from ._otel_metrics import Instruments
from ._otel_semconv import (
    client_attributes,
    error_type,
    outcome_attributes,
    peer_attributes,
    span_attributes,
    span_name,
    status_description,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["REQUEST_ID_EXTENSION", "OpenTelemetry"]

REQUEST_ID_EXTENSION = "httprail.request_id"
"""Where the request id (``RequestId`` stage) is kept; spans carry it as ``httprail.request_id``."""

_CALL_KEY = "httprail.otel"
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
_EXTRA = "pip install 'httprail[otel]'"


class _Call:
    """One logical request: its span and the number of attempts sent so far."""

    __slots__ = ("sent", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.sent = 0


class OpenTelemetry:
    """Trace and measure every request with OpenTelemetry (stable HTTP client conventions).

    Place it outermost (before ``Logging``, ``Retry``, ``Hedge``): its span then covers every
    attempt, wait and rejection. Spans and instruments go to the given providers, else to the
    global ones the application configured (no-ops without an SDK).

    Args:
        tracer_provider: where spans go (default: the global one).
        meter_provider: where metrics go (default: the global one).
        propagate: inject the current context (W3C ``traceparent``/``tracestate`` with the
            default propagators) into every attempt, through the application's propagator.
        suppress_http_instrumentation: mark the attempt's context so that
            ``opentelemetry-instrumentation-httpx``/``-aiohttp-client``, if installed, do not
            add a second span (and a second ``http.client.request.duration``) per attempt.
        clock: timer for durations.

    Raises:
        ConfigError: ``opentelemetry-api`` is not installed (the ``httprail[otel]`` extra).

    Example:
        >>> client = httprail.AsyncClient(plugins=[OpenTelemetry(), *default_plugins()])
    """

    name = "otel"

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        propagate: bool = True,
        suppress_http_instrumentation: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        try:
            from opentelemetry import context, metrics, trace
            from opentelemetry import propagate as propagation
        except ImportError as exc:
            raise ConfigError(
                f"the OpenTelemetry stage (`otel`) needs opentelemetry-api: {_EXTRA}"
            ) from exc
        self._tracer = trace.get_tracer(
            "httprail", __version__, tracer_provider=tracer_provider, schema_url=_SCHEMA_URL
        )
        meter = metrics.get_meter(
            "httprail", __version__, meter_provider=meter_provider, schema_url=_SCHEMA_URL
        )
        self._instruments = Instruments(meter)
        self._client_kind = trace.SpanKind.CLIENT
        self._error = trace.StatusCode.ERROR
        self._status = trace.Status
        self._in_context = trace.set_span_in_context
        self._attach, self._detach, self._set_value = (
            context.attach,
            context.detach,
            context.set_value,
        )
        self._inject = propagation.inject if propagate else None
        # The key the official instrumentations check (``suppress_http_instrumentation``).
        key = getattr(context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)
        self._suppress: str | None = key if suppress_http_instrumentation else None
        self._clock = clock
        self.propagate = propagate

    def __repr__(self) -> str:
        return f"OpenTelemetry(propagate={self.propagate})"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        span = self._tracer.start_span(
            span_name(request.method), kind=self._client_kind, attributes=span_attributes(request)
        )
        upstream = upstream_of(request)
        span.set_attribute("httprail.upstream", upstream)
        call = request.extensions[_CALL_KEY] = _Call(span)
        token = self._attach(self._in_context(span))
        start = self._clock()
        try:
            outcome = await call_next(request)
        except BaseException as exc:  # cancelled (or a bug below): end the span, re-raise
            span.set_attribute("error.type", type(exc).__name__)
            span.end()
            raise
        finally:
            self._detach(token)
        elapsed = self._clock() - start
        attributes = outcome_attributes(outcome)
        attributes["httprail.attempts"] = call.sent
        request_id = request.extensions.get(REQUEST_ID_EXTENSION)
        if request_id is not None:
            attributes["httprail.request_id"] = str(request_id)
        span.set_attributes(attributes)
        self._end(span, outcome, request)
        metric = client_attributes(request)
        metric["httprail.upstream"] = upstream
        _copy_result(attributes, metric)
        self._instruments.calls.record(elapsed, metric)
        return outcome

    def wrap_send(self, send: Next) -> Next:
        """``send`` (the terminal's) with one attempt span around each call; the
        :class:`~httprail.Pipeline` calls this once, when it is built."""

        async def attempt(request: httpx.Request) -> Outcome:
            return await self._attempt(request, send)

        return attempt

    async def _attempt(self, request: httpx.Request, send: Next) -> Outcome:
        extensions = request.extensions
        call = extensions.get(_CALL_KEY)
        resend = 0
        if isinstance(call, _Call):
            resend = call.sent
            call.sent += 1
        attributes = span_attributes(request)
        hedge = extensions.get(HEDGE_EXTENSION)
        kind = "first"
        if hedge:
            attributes["httprail.hedge"] = hedge
            kind = "hedge"
        elif resend:
            kind = "retry"
        if resend:
            attributes["http.request.resend_count"] = resend
        request_id = extensions.get(REQUEST_ID_EXTENSION)
        if request_id is not None:
            attributes["httprail.request_id"] = str(request_id)
        span = self._tracer.start_span(
            span_name(request.method), kind=self._client_kind, attributes=attributes
        )
        ctx = self._in_context(span)
        if self._suppress is not None:
            ctx = self._set_value(self._suppress, True, ctx)
        if self._inject is not None:
            self._inject(request.headers, context=ctx)
        instruments = self._instruments
        metric = client_attributes(request)
        instruments.attempts.add(
            1, {"httprail.upstream": upstream_of(request), "httprail.attempt.kind": kind}
        )
        instruments.active.add(1, metric)
        token = self._attach(ctx)
        start = self._clock()
        try:
            outcome = await send(request)
        except BaseException as exc:  # cancelled (a hedge that lost, a timeout): end, re-raise
            span.set_attribute("error.type", type(exc).__name__)
            span.end()
            raise
        finally:
            self._detach(token)
            instruments.active.add(-1, metric)
        elapsed = self._clock() - start
        result = outcome_attributes(outcome)
        span.set_attributes(result)
        if span.is_recording():
            span.set_attributes(peer_attributes(outcome))
        self._end(span, outcome, request)
        _copy_result(result, metric)
        instruments.duration.record(elapsed, metric)
        return outcome

    def _end(self, span: Span, outcome: Outcome, request: httpx.Request) -> None:
        description = status_description(outcome, request)
        if description is not None:
            span.set_status(self._status(self._error, description))
        span.end()

    def on_event(self, event: Event) -> None:
        """Add the event to its request's span and count it."""
        self._instruments.record(event)
        request = event.request
        if request is None:
            return
        call = request.extensions.get(_CALL_KEY)
        if not isinstance(call, _Call):
            return
        name, attributes = _span_event(event)
        call.span.add_event(name, attributes)


def _copy_result(result: dict[str, Any], metric: dict[str, Any]) -> None:
    """The outcome's low-cardinality attributes, for an instrument."""
    for key in ("http.response.status_code", "error.type", "network.protocol.version"):
        value = result.get(key)
        if value is not None:
            metric[key] = value


def _span_event(event: Event) -> tuple[str, dict[str, Any]]:
    """The span event's name and attributes for an instrumentation event."""
    if isinstance(event, RetryEvent):
        return "httprail.retry", {
            "httprail.retry.attempt": event.attempt,
            "httprail.retry.delay": event.delay,
            "httprail.retry.delay_source": event.delay_source,
            "error.type": error_type(event.error),
        }
    if isinstance(event, BreakerEvent):
        attributes: dict[str, Any] = {
            "httprail.upstream": event.upstream,
            "httprail.breaker.from": event.old.value,
            "httprail.breaker.to": event.new.value,
            "httprail.breaker.reason": event.reason,
        }
        if event.cooldown is not None:
            attributes["httprail.breaker.cooldown"] = event.cooldown
        return "httprail.breaker", attributes
    if isinstance(event, RejectionEvent):
        return "httprail.rejected", {
            "httprail.upstream": event.upstream,
            "httprail.rejection.kind": event.kind,
            "error.type": error_type(event.error),
        }
    assert isinstance(event, HedgeEvent)
    return "httprail.hedge", {
        "httprail.upstream": event.upstream,
        "httprail.hedge.kind": event.kind,
    }
