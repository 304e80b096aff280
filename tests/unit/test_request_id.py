"""RequestId: which id a request gets (caller's, trace's, generated), that it is sent, kept
across retries and logged with every event, and that a bad incoming id is refused."""

from __future__ import annotations

import re
import sys

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from structlog.testing import capture_logs

from httprail import ConfigError, InvalidRequestError, Pipeline
from httprail._discovery import default_registry
from httprail._log import REQUEST_ID, get_logger
from httprail._result import Next, Outcome
from httprail.middleware import Logging, RequestId, Retry, request_id_of
from httprail.middleware._request_id import MAX_LENGTH, _otel_trace, new_id
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/items"


class Recorder:
    """A terminal answering ``status`` and recording the X-Request-ID of each attempt."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses) or [200]
        self.seen: list[str | None] = []
        self.terminal = MockTerminal(self.answer)

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.headers.get("X-Request-ID"))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return httpx.Response(status, request=request)


async def test_generated_id_is_sent_and_stored() -> None:
    """Without a caller's id or a span, the stage generates one, sends it and keeps it in the
    request's extensions."""
    recorder = Recorder()
    request = httpx.Request("GET", URL)
    await Pipeline([RequestId(generate=lambda: "gen-1")], recorder.terminal).send(request)
    assert recorder.seen == ["gen-1"]
    assert request.extensions["httprail.request_id"] == "gen-1"
    assert request_id_of(request) == "gen-1"


def test_default_ids_are_32_hex_digits_and_differ() -> None:
    """The default generator gives 128 random bits as 32 hex digits."""
    first, second = new_id(), new_id()
    for made in (first, second):
        assert re.fullmatch("[0-9a-f]{32}", made), made
    assert first != second


async def test_callers_id_is_kept() -> None:
    """A request that already has the header keeps its id (an incoming request's, forwarded)."""
    recorder = Recorder()
    request = httpx.Request("GET", URL, headers={"X-Request-ID": "abc-123"})
    await Pipeline([RequestId(generate=lambda: "unused")], recorder.terminal).send(request)
    assert recorder.seen == ["abc-123"]
    assert request_id_of(request) == "abc-123"


async def test_custom_header() -> None:
    """``header=`` names the header read and written."""
    recorder = Recorder()
    request = httpx.Request("GET", URL, headers={"X-Correlation-ID": "corr"})
    await Pipeline([RequestId(header="X-Correlation-ID")], recorder.terminal).send(request)
    assert request.headers["X-Correlation-ID"] == "corr"
    assert request_id_of(request) == "corr"
    assert recorder.seen == [None]


async def test_trace_id_is_used_while_a_span_records() -> None:
    """Inside a recording OpenTelemetry span the id is its trace id (32 hex digits);
    ``from_trace=False`` generates one instead."""
    tracer = TracerProvider().get_tracer("test")
    recorder = Recorder()
    with tracer.start_as_current_span("outer") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        await Pipeline([RequestId()], recorder.terminal).send(httpx.Request("GET", URL))
        stage = RequestId(from_trace=False, generate=lambda: "own")
        await Pipeline([stage], recorder.terminal).send(httpx.Request("GET", URL))
    await Pipeline([RequestId(generate=lambda: "no-span")], recorder.terminal).send(
        httpx.Request("GET", URL)
    )
    assert recorder.seen == [trace_id, "own", "no-span"]


async def test_without_opentelemetry_the_id_is_generated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When ``opentelemetry`` cannot be imported, ``from_trace`` falls back to generating."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    _otel_trace.cache_clear()
    try:
        recorder = Recorder()
        stage = RequestId(generate=lambda: "generated")
        await Pipeline([stage], recorder.terminal).send(httpx.Request("GET", URL))
        assert _otel_trace() is None
    finally:
        _otel_trace.cache_clear()
    assert recorder.seen == ["generated"]


@pytest.mark.parametrize("inside", [False, True], ids=["outside-retry", "inside-retry"])
async def test_retries_keep_the_same_id(inside: bool) -> None:
    """Every attempt of a retried request sends the same id, with the stage outside Retry or
    inside it."""
    clock = FakeClock()
    retry = Retry(max_retries=2, sleep=clock.sleep, clock=clock)
    ids = iter(["first", "second", "third"])
    stage = RequestId(generate=lambda: next(ids))
    recorder = Recorder(503, 503, 200)
    stages = [retry, stage] if inside else [stage, retry]
    outcome = await Pipeline(stages, recorder.terminal).send(httpx.Request("GET", URL))
    assert outcome.unwrap().status_code == 200
    assert recorder.seen == ["first", "first", "first"]


async def test_every_log_event_of_the_request_carries_the_id() -> None:
    """The retry and request events of Logging, and an event another stage logs while the
    request runs, carry ``request_id``; after the request the context is clear again."""

    async def chatty(request: httpx.Request, call_next: Next) -> Outcome:
        get_logger("httprail.test").warning("inner.event")
        return await call_next(request)

    chatty.name = "chatty"  # type: ignore[attr-defined]
    clock = FakeClock()
    stages = [
        RequestId(generate=lambda: "rid-7"),
        Logging(),
        Retry(max_retries=1, sleep=clock.sleep, clock=clock),
        chatty,
    ]
    with capture_logs() as logs:
        await Pipeline(stages, Recorder(503).terminal).send(httpx.Request("GET", URL))  # type: ignore[list-item]
    assert [entry["event"] for entry in logs] == [
        "inner.event",
        "http.retry",
        "inner.event",
        "http.request",
    ]
    assert {entry["request_id"] for entry in logs} == {"rid-7"}
    assert REQUEST_ID.get() is None


async def test_logging_outside_the_stage_reads_the_id_from_the_request() -> None:
    """``Logging`` placed before ``RequestId`` still logs the id (it reads the request)."""
    with capture_logs() as logs:
        stages = [Logging(), RequestId(generate=lambda: "late")]
        await Pipeline(stages, Recorder(500).terminal).send(httpx.Request("GET", URL))
    assert logs[0]["request_id"] == "late"


@pytest.mark.parametrize(
    ("value", "described"),
    [
        ("x" * (MAX_LENGTH + 1), f"{MAX_LENGTH + 1} characters"),
        ("caf\u00e9", "outside printable ASCII"),
        ("a\x00b", "outside printable ASCII"),
        (" padded", "outside printable ASCII"),
        ("", "an empty value"),
    ],
    ids=["too-long", "non-ascii", "control", "blank-edge", "empty"],
)
async def test_bad_incoming_id_is_refused_unsent(value: str, described: str) -> None:
    """An incoming id that is too long, empty, not printable ASCII or padded ends the request
    with InvalidRequestError, without sending it and without echoing the value."""
    recorder = Recorder()
    request = httpx.Request("GET", URL, headers={"X-Request-ID": value.encode("latin-1")})
    outcome = await Pipeline([RequestId()], recorder.terminal).send(request)
    error = outcome.failure()
    assert isinstance(error, InvalidRequestError)
    assert described in error.message
    assert "X-Request-ID" in error.message
    if value:
        assert value not in error.message
    assert recorder.seen == []


async def test_a_generator_returning_junk_is_refused() -> None:
    """A ``generate`` that returns a non-string or a bad id fails the request with
    InvalidRequestError naming the option."""
    for junk in (42, "bad id\n"):
        stage = RequestId(generate=lambda junk=junk: junk)  # type: ignore[misc]
        outcome = await Pipeline([stage], Recorder().terminal).send(httpx.Request("GET", URL))
        error = outcome.failure()
        assert isinstance(error, InvalidRequestError)
        assert "RequestId(generate=...)" in error.message


def test_request_id_of_falls_back_to_the_header() -> None:
    """Without the stage, ``request_id_of`` reads the X-Request-ID header (or gives None)."""
    assert request_id_of(httpx.Request("GET", URL, headers={"X-Request-ID": "h"})) == "h"
    assert request_id_of(httpx.Request("GET", URL)) is None


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"header": "bad header"}, "header"),
        ({"header": ""}, "header"),
        ({"from_trace": "yes"}, "from_trace"),
        ({"generate": "uuid"}, "generate"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], named: str) -> None:
    """Each bad option is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=named):
        RequestId(**options)  # type: ignore[arg-type]


def test_found_by_discovery_and_described() -> None:
    """The built-in is discoverable as ``request_id``; its repr shows its options."""
    assert default_registry().get("plugins", "request_id").factory is RequestId
    assert repr(RequestId()) == "RequestId(header='X-Request-ID', from_trace=True)"
