"""The ``OpenTelemetry`` stage's cheap paths: what it skips without an SDK, and what it writes
itself instead of calling the propagator, give the same result as the long way."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from httprail import OpenTelemetry, Pipeline, Success
from httprail.middleware import Retry
from httprail.testing import FakeClock, MockTerminal

from ..integration._otel_sdk import Sdk

URL = "https://api.test/item"
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={})


@pytest.fixture(autouse=True)
def api_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """No global tracer provider, whatever ran before (the global can be set once only)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


@pytest.fixture
def remote_parent() -> Iterator[SpanContext]:
    """A trace to continue in the current context, as a server instrumentation leaves it,
    with a ``tracestate`` and baggage."""
    parent = SpanContext(
        TRACE_ID,
        PARENT_ID,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v1")]),
    )
    ctx = baggage.set_baggage("tenant", "t-7", trace.set_span_in_context(NonRecordingSpan(parent)))
    token = context.attach(ctx)
    yield parent
    context.detach(token)


async def _send(stage: OpenTelemetry, terminal: MockTerminal, *plugins: object) -> None:
    pipeline = Pipeline([stage, *plugins], terminal)
    assert isinstance(await pipeline.send(httpx.Request("GET", URL)), Success)


async def test_api_alone_lets_requests_pass_and_uses_providers_set_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without an SDK a request reaches the terminal without ``traceparent`` and nothing is
    recorded; once a global tracer provider is set the next request is traced, and once the
    meter gets a provider the next one is measured."""
    sdk, terminal = Sdk(), MockTerminal(_ok)
    stage = OpenTelemetry()
    await _send(stage, terminal)
    assert "traceparent" not in terminal.requests[0].headers

    monkeypatch.setattr(trace, "_TRACER_PROVIDER", sdk.tracer_provider)
    await _send(stage, terminal)
    logical = sdk.logical()
    (attempt,) = sdk.children(logical)
    sent = terminal.requests[1].headers["traceparent"]
    context_ = attempt.context
    assert sent == f"00-{context_.trace_id:032x}-{context_.span_id:016x}-{context_.trace_flags:02x}"
    assert sdk.points("http.client.request.duration") == []

    stage._meter_api.on_set_meter_provider(sdk.meter_provider)
    await _send(stage, terminal)
    assert sdk.total("http.client.request.duration") == 1
    assert sdk.total("httprail.attempts", httprail__attempt__kind="first") == 1
    assert len(sdk.finished()) == 4


async def test_api_alone_continues_an_incoming_trace(remote_parent: SpanContext) -> None:
    """With the API alone and a remote parent in the context, the attempt carries the parent's
    ``traceparent``, ``tracestate`` and baggage, as ``propagate.inject`` writes them."""
    terminal = MockTerminal(_ok)
    await _send(OpenTelemetry(), terminal)
    expected: dict[str, str] = {}
    propagate.inject(expected)
    assert expected["traceparent"] == f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
    sent = terminal.requests[0].headers
    assert {name: sent[name] for name in expected} == expected
    assert sent["tracestate"] == "vendor=v1"
    assert sent["baggage"] == "tenant=t-7"


async def test_sdk_attempt_headers_are_what_the_default_propagators_write(
    remote_parent: SpanContext,
) -> None:
    """With the SDK the attempt's headers (written without the propagator while it is the
    default one) equal what ``propagate.inject`` writes for the attempt span's context."""
    sdk, terminal = Sdk(), MockTerminal(_ok)
    await _send(sdk.stage(), terminal)
    (logical,) = [span for span in sdk.finished() if span.parent.span_id == PARENT_ID]
    (attempt,) = sdk.children(logical)
    assert attempt.context.trace_id == TRACE_ID
    expected: dict[str, str] = {}
    propagate.inject(expected, context=trace.set_span_in_context(NonRecordingSpan(attempt.context)))
    sent = terminal.requests[0].headers
    assert {"traceparent", "tracestate", "baggage"} <= set(expected)
    assert {name: sent[name] for name in expected} == expected


async def test_another_global_propagator_is_called_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A propagator the application set after the stage was built writes the attempt's
    headers itself (no ``traceparent`` added behind its back)."""

    class Custom(propagate.textmap.TextMapPropagator):  # type: ignore[name-defined,misc]
        def inject(self, carrier: object, context: object = None, setter: object = None) -> None:
            span = trace.get_current_span(context)  # type: ignore[arg-type]
            carrier["x-trace"] = f"{span.get_span_context().trace_id:032x}"  # type: ignore[index]

        def extract(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("not used")

        @property
        def fields(self) -> set[str]:
            return {"x-trace"}

    sdk, terminal = Sdk(), MockTerminal(_ok)
    stage = sdk.stage()
    monkeypatch.setattr(propagate, "_HTTP_TEXT_FORMAT", Custom())
    await _send(stage, terminal)
    sent = terminal.requests[0].headers
    assert "traceparent" not in sent
    assert sent["x-trace"] == f"{sdk.logical().context.trace_id:032x}"


async def test_metrics_without_a_tracer_open_no_span() -> None:
    """A meter that records and no tracer: a retried request sends no ``traceparent`` and is
    measured (two attempt durations, a first and a retry, one logical duration, none active)."""
    sdk, clock = Sdk(), FakeClock()
    answers = iter([httpx.Response(503), httpx.Response(200)])
    terminal = MockTerminal(lambda request: next(answers))
    stage = OpenTelemetry(meter_provider=sdk.meter_provider)
    await _send(stage, terminal, Retry(max_retries=1, sleep=clock.sleep))
    assert all("traceparent" not in request.headers for request in terminal.requests)
    assert sdk.total("http.client.request.duration") == 2
    assert sdk.total("httprail.attempts", httprail__attempt__kind="retry") == 1
    assert sdk.total("httprail.request.duration") == 1
    assert sdk.total("http.client.active_requests") == 0
    assert sdk.finished() == []


@pytest.mark.parametrize(
    "options",
    [
        {"tracer_provider": trace.NoOpTracerProvider()},
        {"meter_provider": NoOpMeterProvider()},
        {"tracer_provider": trace.NoOpTracerProvider(), "meter_provider": NoOpMeterProvider()},
    ],
    ids=["no-op tracer", "no-op meter", "both"],
)
async def test_no_op_providers_given_explicitly_let_requests_pass(
    options: dict[str, object],
) -> None:
    """The API's no-op providers, given as arguments, are as quiet as the global proxies: the
    request passes untouched (the attempt too)."""
    terminal = MockTerminal(_ok)
    stage = OpenTelemetry(**options)  # type: ignore[arg-type]
    assert stage._may_pass
    await _send(stage, terminal)
    assert "traceparent" not in terminal.requests[0].headers


async def test_attempt_without_the_logical_stage_passes_with_the_api_alone() -> None:
    """The wrapped send on its own, without an SDK, sends the request unchanged."""
    terminal = MockTerminal(_ok)
    send = OpenTelemetry().wrap_send(terminal.send)
    assert isinstance(await send(httpx.Request("GET", URL)), Success)
    assert "traceparent" not in terminal.requests[0].headers


async def test_without_the_api_internals_it_reads_the_public_path_decides(
    monkeypatch: pytest.MonkeyPatch, remote_parent: SpanContext
) -> None:
    """If a future API kept the current span elsewhere, the stage takes the public path for
    every request: still untouched without a trace, still propagating with one; without the
    context variable it reads the current context through ``context.get_current``."""
    from opentelemetry.trace import propagation

    from httprail.middleware import _otel, _otel_api

    monkeypatch.setattr(_otel, "span_lookup", lambda: (context.get_current, ""))
    stage = OpenTelemetry()
    assert not stage._may_pass
    terminal = MockTerminal(_ok)
    await _send(stage, terminal)
    assert terminal.requests[0].headers["traceparent"].startswith(f"00-{TRACE_ID:032x}-")

    token = context.attach(context.Context())  # no trace to continue
    try:
        await _send(stage, terminal)
    finally:
        context.detach(token)
    assert "traceparent" not in terminal.requests[1].headers

    monkeypatch.undo()
    with monkeypatch.context() as patched:
        patched.setattr(context, "_RUNTIME_CONTEXT", object())
        patched.delattr(propagation, "_SPAN_KEY")
        read, key = _otel_api.span_lookup()
    assert read is context.get_current
    assert key == ""


async def test_no_op_providers_given_explicitly_still_continue_an_incoming_trace(
    remote_parent: SpanContext,
) -> None:
    """With the API's no-op providers given as arguments, a remote parent in the context is
    still propagated to the attempt (the no-op tracer hands back the parent's context)."""
    terminal = MockTerminal(_ok)
    stage = OpenTelemetry(tracer_provider=trace.NoOpTracerProvider())
    await _send(stage, terminal)
    assert terminal.requests[0].headers["traceparent"] == f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
