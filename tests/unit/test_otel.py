"""The ``OpenTelemetry`` stage on a MockTerminal: the edges of its attributes and lifecycle."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
import pytest
from opentelemetry.trace import StatusCode

from httprail import (
    AsyncClient,
    BreakerEvent,
    CircuitState,
    ConfigError,
    ConnectError,
    Failure,
    OpenTelemetry,
    Pipeline,
    Success,
)
from httprail.middleware import Retry, default_plugins
from httprail.testing import FakeClock, MockTerminal

from ..integration._otel_sdk import Sdk


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={}, extensions={"http_version": b"HTTP/2"})


def test_without_opentelemetry_the_stage_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Building the stage without ``opentelemetry-api`` raises ``ConfigError`` that says
    ``pip install 'httprail[otel]'``."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError, match=r"httprail\[otel\]"):
        OpenTelemetry()


def test_the_stage_is_found_by_its_entry_point_name() -> None:
    """``otel`` in a stack resolves to the ``OpenTelemetry`` class."""
    from httprail import default_registry

    assert default_registry().get("plugins", "otel").factory is OpenTelemetry


async def test_without_an_sdk_the_request_is_sent_unchanged() -> None:
    """With the API's no-op providers (and no trace to continue) the request succeeds and the
    terminal gets no ``traceparent``: no attempt span, nothing to propagate; ``repr`` names
    the options."""
    terminal = MockTerminal(_ok)
    stage = OpenTelemetry()
    assert repr(stage) == "OpenTelemetry(propagate=True)"
    async with AsyncClient("https://api.test", plugins=[stage], terminal=terminal) as client:
        assert isinstance(await client.get("/x"), Success)
    assert "traceparent" not in terminal.requests[0].headers


async def test_http2_unknown_method_and_propagation_off() -> None:
    """An unknown method is ``_OTHER`` (span name ``HTTP``, the original kept), HTTP/2 is
    protocol version ``2``, and ``propagate=False`` sends no ``traceparent``."""
    sdk = Sdk()
    terminal = MockTerminal(_ok)
    plugins = [sdk.stage(propagate=False)]
    async with AsyncClient("https://api.test", plugins=plugins, terminal=terminal) as client:
        assert isinstance(await client.request("PURGE", "/cache"), Success)
    assert "traceparent" not in terminal.requests[0].headers
    for span in sdk.finished():
        assert span.name == "HTTP"
        assert span.attributes["http.request.method"] == "_OTHER"
        assert span.attributes["http.request.method_original"] == "PURGE"
        assert span.attributes["server.port"] == 443
        assert span.attributes["network.protocol.version"] == "2"


async def test_raw_status_error_is_marked_on_a_successful_outcome() -> None:
    """A 404 returned as ``Success`` (raw status) still gets ``error.type`` ``404``."""
    sdk = Sdk()
    terminal = MockTerminal(lambda request: httpx.Response(404))
    client = AsyncClient(
        "https://api.test", plugins=[sdk.stage()], terminal=terminal, raw_status=True
    )
    async with client:
        assert isinstance(await client.get("/missing"), Success)
    assert {span.attributes["error.type"] for span in sdk.finished()} == {"404"}


async def test_exhausted_retries_name_the_last_status() -> None:
    """After every attempt failed with a 503 the logical span's ``error.type`` is
    ``MaxRetriesExceededError`` with the last attempt's status code; a connection failure's
    attempt span has the error class and no status."""
    sdk, clock = Sdk(), FakeClock()
    terminal = MockTerminal(lambda request: httpx.Response(503))
    plugins = [sdk.stage(), Retry(max_retries=1, sleep=clock.sleep)]
    async with AsyncClient("https://api.test", plugins=plugins, terminal=terminal) as client:
        assert isinstance(await client.get("/down"), Failure)
    logical = sdk.logical()
    assert logical.attributes["error.type"] == "MaxRetriesExceededError"
    assert logical.attributes["http.response.status_code"] == 503
    assert logical.status.status_code is StatusCode.ERROR

    sdk = Sdk()
    terminal = MockTerminal(lambda request: ConnectError("refused", request=request))
    async with AsyncClient("https://api.test", plugins=[sdk.stage()], terminal=terminal) as client:
        assert isinstance(await client.get("/gone"), Failure)
    for span in sdk.finished():
        assert span.attributes["error.type"] == "ConnectError"
        assert "http.response.status_code" not in span.attributes


async def test_cancellation_ends_both_spans_and_propagates() -> None:
    """A request cancelled mid-attempt ends its attempt and logical spans with
    ``error.type`` ``CancelledError`` and leaves no request active."""
    sdk = Sdk()
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    terminal = MockTerminal(hang)
    async with AsyncClient("https://api.test", plugins=[sdk.stage()], terminal=terminal) as client:
        task = asyncio.create_task(client.get("/slow"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    spans = sdk.finished()
    assert len(spans) == 2
    assert {span.attributes["error.type"] for span in spans} == {"CancelledError"}
    assert sdk.total("http.client.active_requests") == 0


async def test_attempt_without_the_logical_stage_is_a_first_attempt() -> None:
    """The wrapped send on its own (a request that did not pass the stage) opens one span
    with no resend count; a breaker event without a request is counted, not attached."""
    sdk = Sdk()
    stage = sdk.stage()
    send = stage.wrap_send(MockTerminal(_ok).send)
    outcome = await send(httpx.Request("GET", "https://api.test/x"))
    assert isinstance(outcome, Success)
    (span,) = sdk.finished()
    assert "http.request.resend_count" not in span.attributes
    stage.on_event(BreakerEvent("https://api.test", CircuitState.CLOSED, CircuitState.OPEN, "x"))
    assert sdk.total("httprail.breaker.transitions") == 1


async def test_events_of_another_request_are_counted_only() -> None:
    """An event whose request never passed the stage is counted but added to no span."""
    sdk = Sdk()
    stage = sdk.stage()
    stage.on_event(
        BreakerEvent(
            "https://api.test",
            CircuitState.OPEN,
            CircuitState.HALF_OPEN,
            "cooldown over",
            request=httpx.Request("GET", "https://api.test/"),
        )
    )
    assert sdk.finished() == []
    assert sdk.total("httprail.breaker.transitions", httprail__breaker__to="half_open") == 1


async def test_stage_composes_with_the_default_stack() -> None:
    """``[OpenTelemetry(), *default_plugins()]`` on a pipeline: the default stack's request
    is traced (one logical and one attempt span)."""
    sdk = Sdk()
    pipeline = Pipeline([sdk.stage(), *default_plugins()], MockTerminal(_ok))
    outcome: Any = await pipeline.send(httpx.Request("GET", "https://api.test/"))
    assert isinstance(outcome, Success)
    assert len(sdk.children(sdk.logical())) == 1


class _Stream:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def get_extra_info(self, info: str) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (
            _Stream(("10.0.0.7", 8443)),
            {"network.peer.address": "10.0.0.7", "network.peer.port": 8443},
        ),
        (_Stream(None), {}),
        (_Stream(OSError("closed")), {}),
        (None, {}),
    ],
)
def test_peer_address_is_taken_only_from_a_stream_that_says(
    stream: object, expected: dict[str, object]
) -> None:
    """``network.peer.*`` come from the response's ``network_stream`` when it answers
    ``server_addr`` with an address; a stream that raises or has none adds nothing."""
    from httprail.middleware._otel_semconv import peer_attributes

    extensions = {} if stream is None else {"network_stream": stream}
    response = httpx.Response(200, extensions=extensions)
    assert peer_attributes(Success(response)) == expected


def test_url_without_default_port_and_text_protocol_version() -> None:
    """A scheme with no default port has no ``server.port``; an ``http_version`` given as
    text is read like bytes."""
    from httprail.middleware._otel_semconv import client_attributes, outcome_attributes

    assert "server.port" not in client_attributes(httpx.Request("GET", "ftp://files.test/a"))
    response = httpx.Response(200, extensions={"http_version": "HTTP/1.0"})
    assert outcome_attributes(Success(response))["network.protocol.version"] == "1.0"


async def test_upstreams_past_max_upstreams_share_one_series_and_totals_stay_right() -> None:
    """A client calling ever new hosts: the first ``max_upstreams`` get series of their own,
    the rest share ``_OTHER`` (upstream and server address, no port), so the series stay
    bounded (one key per host had grown without end: 80,000 series at 20,000 hosts); every
    request is still counted, and spans keep the real host."""
    sdk = Sdk()
    pipeline = Pipeline([sdk.stage(max_upstreams=3), Retry()], MockTerminal(_ok))
    for index in range(10):
        assert isinstance(
            await pipeline.send(httpx.Request("GET", f"https://h{index}.test/")), Success
        )
    for name in ("httprail.request.duration", "http.client.request.duration", "httprail.attempts"):
        points = sdk.points(name)
        upstreams = {a.get("httprail.upstream") for a, _ in points} - {None}
        addresses = {a.get("server.address") for a, _ in points} - {None}
        for seen in (upstreams, addresses):  # whichever the instrument carries
            assert len(seen) <= 3 + 1, (name, seen)  # three of their own, and _OTHER
        assert "_OTHER" in upstreams | addresses, name
        assert sum(value for _, value in points) == 10, name
    other = [
        a for a, _ in sdk.points("http.client.request.duration") if a["server.address"] == "_OTHER"
    ]
    assert other
    assert all("server.port" not in attributes for attributes in other)
    hosts = {span.attributes["server.address"] for span in sdk.finished() if span.parent is None}
    assert hosts == {f"h{index}.test" for index in range(10)}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_max_upstreams_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"OpenTelemetry\(max_upstreams=...\)"):
        OpenTelemetry(max_upstreams=bad)  # type: ignore[arg-type]
