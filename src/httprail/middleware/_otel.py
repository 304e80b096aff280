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
from .._redact import redact_url
from .._result import Next, Outcome
from .._version import __version__
from ._hedge import HEDGE_EXTENSION
from ._otel_metrics import Instruments
from ._otel_semconv import (
    client_attributes,
    error_type,
    outcome_attributes,
    peer_attributes,
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
    """One logical request: its span, the attempts sent so far, and the attributes of its URL
    (shared by its attempts while the URL stays the same object)."""

    __slots__ = ("_full", "base", "sent", "span", "traced", "url")

    def __init__(self, span: Span, url: httpx.URL, base: dict[str, Any]) -> None:
        self.span = span
        self.url = url
        self.base = base
        self.sent = 0
        self.traced = True
        self._full: tuple[httpx.URL, str] | None = None

    def full(self, request: httpx.Request) -> str:
        """``url.full`` of ``request``, redacted once per URL."""
        url = request.url
        known = self._full
        if known is None or known[0] is not url:
            known = self._full = (url, redact_url(url))
        return known[1]


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
        base = client_attributes(request)
        span = self._tracer.start_span(
            span_name(request.method), kind=self._client_kind, attributes=base
        )
        upstream = upstream_of(request)
        call = request.extensions[_CALL_KEY] = _Call(span, request.url, base)
        recording = span.is_recording()  # False with the API alone: skip the URL's redaction
        if recording:
            span.set_attributes({"url.full": call.full(request), "httprail.upstream": upstream})
        # No SDK and no trace to continue: no context to attach, no attempt spans to open.
        call.traced = recording or span.get_span_context().is_valid
        token = self._attach(self._in_context(span)) if call.traced else None
        start = self._clock()
        try:
            outcome = await call_next(request)
        except BaseException as exc:  # cancelled (or a bug below): end the span, re-raise
            span.set_attribute("error.type", type(exc).__name__)
            span.end()
            raise
        finally:
            if token is not None:
                self._detach(token)
        elapsed = self._clock() - start
        attributes = outcome_attributes(outcome)
        metric = {**base, "httprail.upstream": upstream}
        _copy_result(attributes, metric)
        if recording:
            attributes["httprail.attempts"] = call.sent
            request_id = request.extensions.get(REQUEST_ID_EXTENSION)
            if request_id is not None:
                attributes["httprail.request_id"] = str(request_id)
            span.set_attributes(attributes)
        self._end(span, outcome, request)
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
            base = call.base if request.url is call.url else client_attributes(request)
        else:
            call = None
            base = client_attributes(request)
        hedge = extensions.get(HEDGE_EXTENSION)
        kind = "hedge" if hedge else "retry" if resend else "first"
        instruments = self._instruments
        instruments.attempts.add(
            1, {"httprail.upstream": upstream_of(request), "httprail.attempt.kind": kind}
        )
        if call is not None and not call.traced:
            return await self._measured(request, send, base)
        span = self._tracer.start_span(
            span_name(request.method), kind=self._client_kind, attributes=base
        )
        if span.is_recording():
            extra: dict[str, Any] = {
                "url.full": redact_url(request.url) if call is None else call.full(request)
            }
            if resend:
                extra["http.request.resend_count"] = resend
            if hedge:
                extra["httprail.hedge"] = hedge
            request_id = extensions.get(REQUEST_ID_EXTENSION)
            if request_id is not None:
                extra["httprail.request_id"] = str(request_id)
            span.set_attributes(extra)
        ctx = self._in_context(span)
        if self._suppress is not None:
            ctx = self._set_value(self._suppress, True, ctx)
        if self._inject is not None and span.get_span_context().is_valid:
            self._inject(request.headers, context=ctx)
        instruments.active.add(1, base)
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
            instruments.active.add(-1, base)
        elapsed = self._clock() - start
        result = outcome_attributes(outcome)
        span.set_attributes(result)
        if span.is_recording():
            span.set_attributes(peer_attributes(outcome))
        self._end(span, outcome, request)
        metric = dict(base)
        _copy_result(result, metric)
        instruments.duration.record(elapsed, metric)
        return outcome

    async def _measured(self, request: httpx.Request, send: Next, base: dict[str, Any]) -> Outcome:
        """An attempt with metrics and no span (nothing traces this request)."""
        instruments = self._instruments
        instruments.active.add(1, base)
        start = self._clock()
        try:
            outcome = await send(request)
        finally:
            instruments.active.add(-1, base)
        elapsed = self._clock() - start
        metric = dict(base)
        _copy_result(outcome_attributes(outcome), metric)
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
