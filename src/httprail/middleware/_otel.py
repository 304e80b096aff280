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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

from .._args import is_int, need, need_callable
from .._context import upstream_of
from .._errors import ConfigError
from .._events import BreakerEvent, Event, HedgeEvent, RejectionEvent, RetryEvent
from .._redact import redact_url
from .._result import Next, Outcome
from .._version import __version__
from ._hedge import HEDGE_EXTENSION
from ._otel_api import meter_idle, quiet, span_lookup, tracer_idle
from ._otel_inject import Injector
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
    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["REQUEST_ID_EXTENSION", "OpenTelemetry"]

REQUEST_ID_EXTENSION = "httprail.request_id"
"""Where the request id (``RequestId`` stage) is kept; spans carry it as ``httprail.request_id``."""

_CALL_KEY = "httprail.otel"
_PASSED = "passed"  # a request the stage let pass untouched (its attempts too)
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
_EXTRA = "pip install 'httprail[otel]'"


class _Call:
    """One logical request: its span (``None`` when nothing traces it), the attempts sent so
    far, and the attributes of its URL (shared by its attempts while the URL stays the same
    object)."""

    __slots__ = ("_full", "active", "base", "metered", "sent", "span", "traced", "upstream", "url")

    def __init__(
        self,
        span: Span | None,
        request: httpx.Request,
        base: dict[str, Any],
        upstream: str,
        metered: bool,
    ) -> None:
        self.span = span
        self.url = request.url
        self.base = base
        self.upstream = upstream
        self.metered = metered
        self.traced = span is not None
        self.sent = 0
        self.active: tuple[tuple[str, Any], ...] = ()
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
    global ones the application configured (no-ops without an SDK: then, with no trace to
    continue, a request passes through untouched, and one configured later is used from the
    next request on).

    Args:
        tracer_provider: where spans go (default: the global one).
        meter_provider: where metrics go (default: the global one).
        propagate: inject the current context (W3C ``traceparent``/``tracestate`` with the
            default propagators) into every attempt, through the application's propagator.
        suppress_http_instrumentation: mark the attempt's context so that
            ``opentelemetry-instrumentation-httpx``/``-aiohttp-client``, if installed, do not
            add a second span (and a second ``http.client.request.duration``) per attempt.
        clock: timer for durations.
        max_upstreams: upstreams with metric series of their own; later ones share one, named
            ``_OTHER`` (``httprail.upstream`` and ``server.address``), so the series stay
            bounded whatever hosts a client calls. Spans are not affected.

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
        max_upstreams: int = 1000,
    ) -> None:
        try:
            from opentelemetry import context, metrics, trace
        except ImportError as exc:
            raise ConfigError(
                f"the OpenTelemetry stage (`otel`) needs opentelemetry-api: {_EXTRA}"
            ) from exc
        for label, provider, method in (
            ("tracer_provider", tracer_provider, "get_tracer"),
            ("meter_provider", meter_provider, "get_meter"),
        ):  # duck-typed, as OpenTelemetry's API takes them
            usable = provider is None or callable(getattr(provider, method, None))
            rule = f"None or an OpenTelemetry provider (with {method}())"
            need(usable, "OpenTelemetry", label, rule, provider)
        need_callable("OpenTelemetry", "clock", clock)
        need(is_int(max_upstreams) and max_upstreams >= 1, "OpenTelemetry", "max_upstreams",
             "an int >= 1", max_upstreams)  # fmt: skip
        self._tracer = trace.get_tracer(
            "httprail", __version__, tracer_provider=tracer_provider, schema_url=_SCHEMA_URL
        )
        meter = metrics.get_meter(
            "httprail", __version__, meter_provider=meter_provider, schema_url=_SCHEMA_URL
        )
        self._instruments = Instruments(meter, max_upstreams)
        self._tracer_idle = tracer_idle(self._tracer)
        self._meter_idle = meter_idle(meter)
        self._current_span = trace.get_current_span
        self._get_current, self._span_key = span_lookup()
        # What a request reads to pass untouched (see :func:`._otel_api.quiet`).
        self._may_pass, self._trace_api, self._meter_api = quiet(self._tracer, meter)
        if not self._span_key:
            self._may_pass = False  # no cheap look at the current span: always the full check
        self._client_kind = trace.SpanKind.CLIENT
        self._error = trace.StatusCode.ERROR
        self._status = trace.Status
        self._in_context = trace.set_span_in_context
        self._attach, self._detach, self._set_value = (
            context.attach,
            context.detach,
            context.set_value,
        )
        self._inject = Injector() if propagate else None
        # The key the official instrumentations check (``suppress_http_instrumentation``).
        key = getattr(context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)
        self._suppress: str | None = key if suppress_http_instrumentation else None
        self._clock = clock
        self.propagate = propagate

    def __repr__(self) -> str:
        return f"OpenTelemetry(propagate={self.propagate})"

    def _continues(self) -> bool:
        """Whether the current context holds a span (a trace to continue)."""
        return self._current_span().get_span_context().is_valid

    def _tracing(self) -> bool:
        """Whether this request gets spans: a tracer that records, or a trace to continue."""
        idle = self._tracer_idle
        if idle is None:
            return True
        if not idle():
            self._tracer_idle, self._may_pass = None, False  # a global provider stays set
            return True
        return self._continues()

    def _metering(self) -> bool:
        """Whether a meter records (it stays so once it does)."""
        idle = self._meter_idle
        if idle is None:
            return True
        if not idle():
            self._meter_idle, self._may_pass = None, False
            return True
        return False

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        # The API alone (neither provider records) and no span in the context: pass untouched,
        # and tell the attempt so. Inline: this is all such a request pays.
        if (
            self._may_pass
            and self._trace_api._TRACER_PROVIDER is None
            and self._meter_api._real_meter is None
            and self._get_current().get(self._span_key) is None
        ):
            request.extensions[_CALL_KEY] = _PASSED
            return await call_next(request)
        traced = self._tracing()
        metered = self._metering()
        if not traced and not metered:  # the API alone, no trace to continue
            return await call_next(request)
        base = client_attributes(request)
        upstream = upstream_of(request)
        if not traced:
            request.extensions[_CALL_KEY] = call = _Call(None, request, base, upstream, True)
            start = self._clock()
            outcome = await call_next(request)
            elapsed = self._clock() - start
            self._record_call(elapsed, outcome_attributes(outcome), call, None)
            return outcome
        span = self._tracer.start_span(
            span_name(request.method), kind=self._client_kind, attributes=base
        )
        request.extensions[_CALL_KEY] = call = _Call(span, request, base, upstream, metered)
        ctx = self._in_context(span)
        token = self._attach(ctx)
        start = self._clock()
        try:
            outcome = await call_next(request)
        except BaseException as exc:  # cancelled (or a bug below): end the span, re-raise
            if span.is_recording():
                span.set_attributes(
                    {**self._logical(call, request), "error.type": type(exc).__name__}
                )
            span.end()
            raise
        finally:
            self._detach(token)
        elapsed = self._clock() - start
        result = outcome_attributes(outcome)
        if span.is_recording():
            span.set_attributes({**self._logical(call, request), **result})
        self._end(span, outcome, request)
        if metered:
            self._record_call(elapsed, result, call, ctx)
        return outcome

    def _logical(self, call: _Call, request: httpx.Request) -> dict[str, Any]:
        """The logical span's attributes that are set when it ends (but its outcome's)."""
        attributes: dict[str, Any] = {
            "url.full": call.full(request),
            "httprail.upstream": call.upstream,
            "httprail.attempts": call.sent,
        }
        request_id = request.extensions.get(REQUEST_ID_EXTENSION)
        if request_id is not None:
            attributes["httprail.request_id"] = str(request_id)
        return attributes

    def _record_call(
        self, elapsed: float, result: dict[str, Any], call: _Call, ctx: Context | None
    ) -> None:
        metric = {**call.base, "httprail.upstream": call.upstream}
        metric = self._instruments.attributes(metric, call.upstream)
        _copy_result(result, metric)
        self._instruments.calls.record(elapsed, metric, context=ctx)

    def wrap_send(self, send: Next) -> Next:
        """``send`` (the terminal's) with one attempt span around each call; the
        :class:`~httprail.Pipeline` calls this once, when it is built."""

        # A plain function returning the coroutine to await: a request the stage let pass
        # costs one dictionary read here, no coroutine of its own.
        def attempt(request: httpx.Request) -> Awaitable[Outcome]:
            call = request.extensions.get(_CALL_KEY)
            if call is _PASSED:
                return send(request)
            if not isinstance(call, _Call):  # no logical stage before this send
                traced, metered = self._tracing(), self._metering()
                if not traced and not metered:
                    return send(request)
                base = client_attributes(request)
                call = _Call(None, request, base, upstream_of(request), metered)
                call.traced = traced
            return self._attempt(request, send, call)

        return attempt

    async def _attempt(self, request: httpx.Request, send: Next, call: _Call) -> Outcome:
        resend = call.sent
        call.sent += 1
        url_changed = request.url is not call.url
        base = client_attributes(request) if url_changed else call.base
        hedge = request.extensions.get(HEDGE_EXTENSION)
        metered = call.metered
        instruments = self._instruments
        active: tuple[tuple[str, Any], ...] = ()
        if metered:
            kind = "hedge" if hedge else "retry" if resend else "first"
            upstream = instruments.upstream(call.upstream)
            instruments.attempts.add(
                (("httprail.upstream", upstream), ("httprail.attempt.kind", kind)), 1
            )
            active = call.active
            if not active or url_changed:
                active = tuple(instruments.attributes(base, call.upstream).items())
                if not url_changed:
                    call.active = active
        if not call.traced:
            return await self._measured(request, send, active)
        span = self._tracer.start_span(
            span_name(request.method), kind=self._client_kind, attributes=base
        )
        ctx = self._in_context(span)
        if self._suppress is not None:
            ctx = self._set_value(self._suppress, True, ctx)
        span_context = span.get_span_context()
        if self._inject is not None and span_context.is_valid:
            self._inject(request.headers, span_context, ctx)
        if metered:
            instruments.active.add(active, 1)
        token = self._attach(ctx)
        start = self._clock()
        try:
            outcome = await send(request)
        except BaseException as exc:  # cancelled (a hedge that lost, a timeout): end, re-raise
            if span.is_recording():
                extra = _attempt_attributes(call, request, resend, hedge)
                extra["error.type"] = type(exc).__name__
                span.set_attributes(extra)
            span.end()
            raise
        finally:
            self._detach(token)
            if metered:
                instruments.active.add(active, -1)
        elapsed = self._clock() - start
        result = outcome_attributes(outcome)
        if span.is_recording():
            extra = _attempt_attributes(call, request, resend, hedge)
            extra.update(result)
            extra.update(peer_attributes(outcome))
            span.set_attributes(extra)
        self._end(span, outcome, request)
        if metered:
            metric = dict(active)  # the attributes as metrics record them
            _copy_result(result, metric)
            instruments.duration.record(elapsed, metric, context=ctx)
        return outcome

    async def _measured(
        self, request: httpx.Request, send: Next, active: tuple[tuple[str, Any], ...]
    ) -> Outcome:
        """An attempt with metrics and no span (nothing traces this request); ``active``: its
        attributes as metrics record them."""
        instruments = self._instruments
        instruments.active.add(active, 1)
        start = self._clock()
        try:
            outcome = await send(request)
        finally:
            instruments.active.add(active, -1)
        elapsed = self._clock() - start
        metric = dict(active)
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
        if not isinstance(call, _Call) or call.span is None:
            return
        name, attributes = _span_event(event)
        call.span.add_event(name, attributes)


def _attempt_attributes(
    call: _Call, request: httpx.Request, resend: int, hedge: object
) -> dict[str, Any]:
    """An attempt span's attributes that are set when it ends (but its outcome's)."""
    attributes: dict[str, Any] = {"url.full": call.full(request)}
    if resend:
        attributes["http.request.resend_count"] = resend
    if hedge:
        attributes["httprail.hedge"] = hedge
    request_id = request.extensions.get(REQUEST_ID_EXTENSION)
    if request_id is not None:
        attributes["httprail.request_id"] = str(request_id)
    return attributes


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
