"""The ``OpenTelemetry`` stage with the real SDK against a real ChaosServer on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from httprail import (
    AsyncClient,
    CircuitBreakerOpenError,
    Failure,
    HttpSettings,
    Success,
)
from httprail.middleware import (
    Bulkhead,
    CircuitBreaker,
    Hedge,
    RateLimiter,
    RequestId,
    Retry,
    RetryBudget,
)
from httprail.terminals import AiohttpTerminal, CurlTerminal, HttpxTerminal
from httprail.testing import ChaosServer, FakeClock, Reply

from ._otel_sdk import Sdk

CANARY = "CANARY51e0d"
TERMINALS = {"aiohttp": AiohttpTerminal, "httpx": HttpxTerminal, "curl": CurlTerminal}


@pytest.fixture
def sdk() -> Sdk:
    return Sdk()


@pytest.fixture
def server() -> Iterator[ChaosServer]:
    with ChaosServer() as chaos:
        yield chaos


def _client(server: ChaosServer, plugins: list[Any], terminal: str = "aiohttp") -> AsyncClient:
    settings = HttpSettings()
    return AsyncClient(server.url, plugins=plugins, terminal=TERMINALS[terminal](settings))


@pytest.mark.parametrize("terminal", sorted(TERMINALS))
async def test_retried_request_is_one_logical_span_with_an_attempt_span_per_try(
    sdk: Sdk, server: ChaosServer, terminal: str
) -> None:
    """Two 503s then 200: one logical CLIENT span with three attempt children (resend counts
    1 and 2, semconv attributes, statuses), the two waits as events, and the server saw a
    ``traceparent`` of the same trace on each attempt, naming that attempt's span."""
    clock = FakeClock()
    server.script("/flaky", Reply.status(503), Reply.status(503), Reply.json({"ok": True}))
    plugins = [sdk.stage(), Retry(max_retries=3, sleep=clock.sleep), CircuitBreaker()]
    async with _client(server, plugins, terminal) as client:
        outcome = await client.get("/flaky")
    assert isinstance(outcome, Success)
    assert len(clock.sleeps) == 2

    logical = sdk.logical()
    attempts = sdk.children(logical)
    assert [span.kind for span in (logical, *attempts)] == [SpanKind.CLIENT] * 4
    assert [span.name for span in (logical, *attempts)] == ["GET"] * 4
    url = f"{server.url}/flaky"
    for span in (logical, *attempts):
        attributes = dict(span.attributes or {})
        assert attributes["http.request.method"] == "GET"
        assert attributes["url.full"] == url
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == server.port
        assert attributes["network.protocol.version"] == "1.1"
    assert [a.attributes.get("http.response.status_code") for a in attempts] == [503, 503, 200]
    assert [a.attributes.get("error.type") for a in attempts] == ["503", "503", None]
    assert [a.attributes.get("http.request.resend_count") for a in attempts] == [None, 1, 2]
    assert [a.status.status_code for a in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert logical.attributes["http.response.status_code"] == 200
    assert logical.attributes["httprail.attempts"] == 3
    assert "error.type" not in logical.attributes
    assert logical.status.status_code is StatusCode.UNSET

    waits = [event for event in logical.events if event.name == "httprail.retry"]
    assert [event.attributes["httprail.retry.delay"] for event in waits] == clock.sleeps
    assert [event.attributes["httprail.retry.delay_source"] for event in waits] == ["backoff"] * 2
    assert [event.attributes["error.type"] for event in waits] == ["503", "503"]

    received = [request.header("traceparent") for request in server.requests_for("/flaky")]
    trace_id = f"{logical.context.trace_id:032x}"
    assert received == [
        f"00-{trace_id}-{span.context.span_id:016x}-{span.context.trace_flags:02x}"
        for span in attempts
    ]


async def test_metrics_count_attempts_retries_and_durations(sdk: Sdk, server: ChaosServer) -> None:
    """The same request counts 3 attempts (1 first, 2 retries), 2 retries caused by 503, 3
    physical durations, 1 logical duration and no request left active."""
    clock = FakeClock()
    server.script("/flaky", Reply.status(503), Reply.status(503), Reply.json({"ok": True}))
    async with _client(server, [sdk.stage(), Retry(max_retries=3, sleep=clock.sleep)]) as client:
        assert isinstance(await client.get("/flaky"), Success)
    assert sdk.total("httprail.attempts", httprail__attempt__kind="first") == 1
    assert sdk.total("httprail.attempts", httprail__attempt__kind="retry") == 2
    assert sdk.total("httprail.retries", httprail__retry__cause="503") == 2
    assert sdk.total("http.client.request.duration", http__response__status_code=503) == 2
    assert sdk.total("http.client.request.duration", http__response__status_code=200) == 1
    assert sdk.total("httprail.request.duration") == 1
    assert sdk.total("http.client.active_requests") == 0
    (point,) = [
        p for p in sdk.points("http.client.request.duration") if p[0].get("error.type") == "503"
    ]
    assert point[0]["server.port"] == server.port


async def test_open_circuit_is_a_span_with_error_type_and_no_attempt(
    sdk: Sdk, server: ChaosServer
) -> None:
    """Once the circuit is open, a request is one logical span with ``error.type`` set to
    ``CircuitBreakerOpenError``, status ERROR, a rejection event and no attempt child; the
    breaker's state and the rejection are counted."""
    server.script("/down", Reply.status(500))
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    async with _client(server, [sdk.stage(), breaker]) as client:
        assert isinstance(await client.get("/down"), Failure)
        sdk.spans.clear()
        outcome = await client.get("/down")
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), CircuitBreakerOpenError)
    (span,) = sdk.finished()
    assert span.attributes["error.type"] == "CircuitBreakerOpenError"
    assert span.attributes["httprail.attempts"] == 0
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert event.name == "httprail.rejected"
    assert event.attributes["httprail.rejection.kind"] == "open_circuit"
    assert server.count("/down") == 1
    upstream = server.url
    assert sdk.total("httprail.rejections", httprail__rejection__kind="open_circuit") == 1
    assert sdk.total("httprail.breaker.transitions", httprail__breaker__to="open") == 1
    states = {
        attributes["httprail.breaker.state"]: value
        for attributes, value in sdk.points("httprail.breaker.state")
        if attributes["httprail.upstream"] == upstream
    }
    assert states == {"closed": 0, "open": 1, "half_open": 0}


async def test_breaker_transition_is_an_event_of_the_span_that_caused_it(
    sdk: Sdk, server: ChaosServer
) -> None:
    """The request whose failure opens the circuit carries a ``httprail.breaker`` event
    (closed -> open, with the reason and cooldown)."""
    server.script("/down", Reply.status(500))
    async with _client(server, [sdk.stage(), CircuitBreaker(failure_threshold=1)]) as client:
        await client.get("/down")
    (event,) = sdk.logical().events
    assert event.name == "httprail.breaker"
    assert event.attributes["httprail.breaker.from"] == "closed"
    assert event.attributes["httprail.breaker.to"] == "open"
    assert event.attributes["httprail.breaker.cooldown"] > 0


async def test_budget_bulkhead_and_rate_limit_rejections_are_counted(
    sdk: Sdk, server: ChaosServer
) -> None:
    """An empty retry budget, a full bulkhead and a rate limiter that will not wait each end
    the request with a rejection event of their kind and a count in ``httprail.rejections``."""
    clock = FakeClock()
    server.script("/busy", Reply.status(503))
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, clock=clock)
    retry = Retry(max_retries=2, sleep=clock.sleep, budget=budget)
    async with _client(server, [sdk.stage(), retry]) as client:
        await client.get("/busy")
    assert sdk.total("httprail.rejections", httprail__rejection__kind="retry_budget") == 1

    server.script("/slow", Reply.slow(0.2))
    async with _client(server, [sdk.stage(), Bulkhead(max_concurrent=1, max_queue=0)]) as client:
        outcomes = await asyncio.gather(client.get("/slow"), client.get("/slow"))
    assert sum(isinstance(o, Failure) for o in outcomes) == 1
    assert sdk.total("httprail.rejections", httprail__rejection__kind="bulkhead") == 1

    limiter = RateLimiter(rate=1, burst=1, max_wait=0, clock=clock, sleep=clock.sleep)
    async with _client(server, [sdk.stage(), limiter]) as client:
        await client.get("/slow")
        await client.get("/slow")
    assert sdk.total("httprail.rejections", httprail__rejection__kind="rate_limit") == 1
    kinds = {
        event.attributes["httprail.rejection.kind"]
        for span in sdk.finished()
        for event in span.events
        if event.name == "httprail.rejected"
    }
    assert kinds == {"retry_budget", "bulkhead", "rate_limit"}


async def test_hedge_is_an_attempt_span_of_its_own_and_is_counted(
    sdk: Sdk, server: ChaosServer
) -> None:
    """A slow primary raced by a fast hedge: two attempt spans under one logical span (the
    hedge's with resend count 1 and ``httprail.hedge``), hedges sent and won counted."""
    server.script("/tail", Reply.slow(1.0), Reply.json({"fast": True}))
    hedge = Hedge(delay=0.05)
    async with _client(server, [sdk.stage(), hedge]) as client:
        outcome = await client.get("/tail")
    assert isinstance(outcome, Success)
    logical = sdk.logical()
    attempts = sdk.children(logical)
    assert len(attempts) == 2
    (copy,) = [span for span in attempts if span.attributes.get("httprail.hedge") == 1]
    assert copy.attributes["http.request.resend_count"] == 1
    assert sdk.total("httprail.hedges", httprail__hedge__kind="sent") == 1
    assert sdk.total("httprail.hedges", httprail__hedge__kind="won") == 1
    assert sdk.total("httprail.attempts", httprail__attempt__kind="hedge") == 1


async def test_request_id_is_an_attribute_of_every_span(sdk: Sdk, server: ChaosServer) -> None:
    """With ``RequestId`` inside the stage, the id is the trace's id: the logical and attempt
    spans carry it as ``httprail.request_id`` and the server receives it as ``X-Request-ID``."""
    server.script("/id", Reply.json({}))
    async with _client(server, [sdk.stage(), RequestId()]) as client:
        assert isinstance(await client.get("/id"), Success)
    spans = sdk.finished()
    assert len(spans) == 2
    trace_id = format(spans[0].context.trace_id, "032x")
    assert {span.attributes.get("httprail.request_id") for span in spans} == {trace_id}
    (received,) = server.requests_for("/id")
    assert dict(received.headers)["x-request-id"] == trace_id


@pytest.mark.parametrize("terminal", sorted(TERMINALS))
async def test_no_secret_reaches_a_span_event_status_or_metric_label(
    sdk: Sdk, server: ChaosServer, terminal: str
) -> None:
    """A canary in the userinfo, in ``?api_key=`` and in ``Authorization`` appears in no span
    name, attribute, event, status description or metric label (success, retried 5xx and
    connection failure alike)."""
    clock = FakeClock()
    server.script("/s", Reply.status(503), Reply.json({}))
    host = server.url.removeprefix("http://")
    url = f"http://user:{CANARY}-pw@{host}/s?api_key={CANARY}-q&page=1"
    plugins = [sdk.stage(), Retry(max_retries=2, sleep=clock.sleep)]
    async with _client(server, plugins, terminal) as client:
        headers = {"Authorization": f"Bearer {CANARY}-token"}
        assert isinstance(await client.get(url, headers=headers), Success)
        await client.get(f"{url}&x=1", headers=headers)
        await client.get(f"http://user:{CANARY}-pw@127.0.0.1:9/s?api_key={CANARY}-q")
    text = sdk.everything_text()
    assert "REDACTED" in text
    assert CANARY not in text
