"""Health snapshot: what ``Pipeline.health()`` reads from the breaker, budget, bulkhead and
metrics stages, its status, and its JSON form."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from httprail import (
    AsyncClient,
    ConfigError,
    ConnectError,
    HealthSnapshot,
    HttpSettings,
    InvalidRequestError,
    Pipeline,
    RequestError,
    UpstreamHealth,
)
from httprail.middleware import (
    Bulkhead,
    CircuitBreaker,
    Metrics,
    Retry,
    RetryBudget,
    default_plugins,
)
from httprail.middleware._window import WindowFigures
from httprail.testing import FakeClock, MockTerminal

A = "https://a.test"
B = "https://b.test"


def failing(request: httpx.Request) -> httpx.Response | RequestError:
    """503 from a.test, 200 from everyone else."""
    status = 503 if request.url.host == "a.test" else 200
    return httpx.Response(status, request=request)


async def send(pipeline: Pipeline, url: str, method: str = "GET") -> None:
    await pipeline.send(httpx.Request(method, url))


async def test_empty_pipeline_is_ok_with_no_upstreams() -> None:
    """A pipeline with no stages knows no upstream and reports ``ok``."""
    snapshot = await Pipeline([], MockTerminal(failing)).health()
    assert snapshot == HealthSnapshot({}, "ok")
    assert snapshot.to_dict() == {"status": "ok", "upstreams": {}}


async def test_open_breaker_degrades_and_retry_in_counts_down() -> None:
    """Two failures open a.test's circuit: status degraded, retry_in falls as the clock moves,
    then reads 0 and half_open once the break is over; b.test (known from Metrics: the breaker
    keeps no record of an upstream that never failed) stays closed."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown=30.0, clock=clock)
    pipeline = Pipeline([Metrics(clock=clock), breaker], MockTerminal(failing))
    await send(pipeline, f"{A}/x")
    await send(pipeline, f"{B}/x")
    assert (await pipeline.health()).status == "ok"
    await send(pipeline, f"{A}/x")

    snapshot = await pipeline.health()
    assert snapshot.status == "degraded"
    assert list(snapshot.upstreams) == [A, B]
    assert snapshot.upstreams[A].breaker == "open"
    assert snapshot.upstreams[A].retry_in == pytest.approx(30.0)
    assert snapshot.upstreams[B].breaker == "closed"
    assert snapshot.upstreams[B].retry_in is None

    clock.advance(12.5)
    assert (await pipeline.health()).upstreams[A].retry_in == pytest.approx(17.5)
    clock.advance(20.0)
    late = (await pipeline.health()).upstreams[A]
    assert (late.breaker, late.retry_in) == ("half_open", 0.0)


async def test_every_breaker_open_is_down() -> None:
    """When every known upstream's circuit is open the status is ``down``."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown=30.0, clock=FakeClock())
    pipeline = Pipeline([breaker], MockTerminal(failing))
    await send(pipeline, f"{A}/x")
    snapshot = await pipeline.health()
    assert (snapshot.status, snapshot.upstreams[A].breaker) == ("down", "open")


async def test_budget_left_falls_as_retries_are_spent() -> None:
    """Retries withdrawn from the Retry stage's budget lower ``budget_left`` (1 request
    deposited, floor 2 retries: 2.2 allowed, 2 spent, 0 left)."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.2, window=10.0, clock=clock)
    retry = Retry(max_retries=2, budget=budget, sleep=clock.sleep, clock=clock)
    pipeline = Pipeline([retry, Retry(max_retries=0, budget=budget)], MockTerminal(failing))
    assert (await pipeline.health()).upstreams == {}
    await send(pipeline, f"{A}/x")
    health = (await pipeline.health()).upstreams[A]
    assert health.budget_left == 0.0
    assert health.breaker is None
    assert health.queued is None


async def test_bulkhead_in_flight_and_queue() -> None:
    """Requests held by the terminal show as in flight, and the one waiting for a slot as
    queued; both go back to 0 when they finish."""
    gate = asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200, request=request)

    bulkhead = Bulkhead(max_concurrent=2, max_queue=5)
    pipeline = Pipeline([bulkhead], MockTerminal(held))
    tasks = [asyncio.create_task(send(pipeline, f"{A}/x")) for _ in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    health = (await pipeline.health()).upstreams[A]
    assert (health.in_flight, health.queued) == (2, 1)
    gate.set()
    await asyncio.gather(*tasks)
    assert (await pipeline.health()).upstreams == {}  # an idle bulkhead forgets the key


async def test_metrics_window_error_rate_latency_and_in_flight() -> None:
    """Metrics' recent window gives requests, the upstream error rate (a caller's own error
    does not count) and latency quantiles; without a bulkhead nothing counts in-flight
    requests, so a held request reads 0."""
    clock = FakeClock()
    gate = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response | RequestError:
        if request.url.path == "/slow":
            clock.advance(0.2)
        if request.url.path == "/held":
            await gate.wait()
        if request.url.path == "/bad":
            return InvalidRequestError("the caller's mistake", request=request)
        if request.url.path == "/down":
            return ConnectError("refused", request=request)
        return httpx.Response(200, request=request)

    pipeline = Pipeline([Metrics(clock=clock)], MockTerminal(answer))
    for path in ("/ok", "/ok", "/slow", "/down", "/bad"):
        await send(pipeline, f"{A}{path}")
    held = asyncio.create_task(send(pipeline, f"{A}/held"))
    await asyncio.sleep(0)

    health = (await pipeline.health()).upstreams[A]
    assert health.requests == 5
    assert health.error_rate == pytest.approx(1 / 4)  # 3 successes + 1 refused; /bad not
    assert health.latency_p50 == 0.001
    assert health.latency_p99 == 0.25
    assert health.in_flight is None  # held in flight, but no bulkhead counts it
    gate.set()
    await held
    assert (await pipeline.health()).upstreams[A].requests == 6


async def test_window_forgets_old_requests() -> None:
    """Requests older than the window leave it; the lifetime counters keep them."""
    clock = FakeClock()
    metrics = Metrics(clock=clock, window=60.0)
    pipeline = Pipeline([metrics], MockTerminal(failing))
    await send(pipeline, f"{A}/x")
    clock.advance(30.0)
    await send(pipeline, f"{A}/x")
    assert (await pipeline.health()).upstreams[A].requests == 2
    clock.advance(40.0)
    health = (await pipeline.health()).upstreams[A]
    assert (health.requests, health.error_rate) == (1, 1.0)
    clock.advance(600.0)
    health = (await pipeline.health()).upstreams[A]
    assert (health.requests, health.error_rate, health.latency_p50) == (0, None, None)
    assert metrics.snapshot()[A].requests == 2


async def test_window_keeps_only_slots_inside_it() -> None:
    """The window covers the slots (10 s each of 60 s) that end inside it: after a gap the
    older ones drop out of the figures, and after a long gap only the newest request is left;
    a caller's own error counts as a request, not in the error rate or the latency."""
    clock = FakeClock(start=0.0)

    def answer(request: httpx.Request) -> httpx.Response | RequestError:
        if request.url.path == "/down":
            return ConnectError("refused", request=request)
        if request.url.path == "/bad":
            clock.advance(5.0)  # slow, but not the upstream's fault: not in the latency
            return InvalidRequestError("the caller's", request=request)
        return httpx.Response(200, request=request)

    metrics = Metrics(clock=clock, window=60.0)
    pipeline = Pipeline([metrics], MockTerminal(answer))

    async def at(time: float, path: str) -> None:
        clock.advance(time - clock())
        await send(pipeline, f"{A}{path}")

    await at(5.0, "/ok")  # slot 0
    await at(25.0, "/ok")  # slot 2
    await at(45.0, "/down")  # slot 4
    await at(46.0, "/bad")  # slot 4 (ends at 51)
    figures = metrics.recent()[A]
    assert (figures.requests, figures.reached, figures.errors) == (4, 3, 1)
    assert figures.quantile(0.99) == 0.001
    await at(75.0, "/ok")  # slot 7: slots 0 and 1 are out
    figures = metrics.recent()[A]
    assert (figures.requests, figures.reached, figures.errors) == (4, 3, 1)
    await at(1000.0, "/ok")
    assert metrics.recent()[A].requests == 1
    clock.advance(100.0)
    figures = metrics.recent()[A]
    assert (figures.requests, figures.quantile(0.5)) == (0, None)


def test_window_quantile_above_every_bound_is_none() -> None:
    """A quantile that falls in the overflow bucket (slower than every bound) reads None."""
    figures = WindowFigures(60.0, 1, 1, 0, (0.5,), (0, 1))
    assert figures.quantile(0.5) is None


def test_metrics_window_must_be_positive() -> None:
    """``Metrics(window=0)`` is a ConfigError naming the option."""
    for bad in (0, -1.0, math.inf, True, "60"):
        with pytest.raises(ConfigError, match="window"):
            Metrics(window=bad)  # type: ignore[arg-type]


async def test_several_stages_of_a_kind_combine() -> None:
    """Three breakers: the worst state and the longer wait win (a closed one after them
    changes nothing); two bulkheads' queues add up."""
    clock = FakeClock()
    short = CircuitBreaker(failure_threshold=1, cooldown=10.0, clock=clock)
    long = CircuitBreaker(failure_threshold=1, cooldown=40.0, clock=clock)
    never = CircuitBreaker(failure_threshold=100, clock=clock)
    pipeline = Pipeline(
        [Bulkhead(max_concurrent=5), short, Bulkhead(max_concurrent=5), long, never],
        MockTerminal(failing),
    )
    await send(pipeline, f"{A}/x")
    clock.advance(15.0)
    health = (await pipeline.health()).upstreams[A]
    assert (health.breaker, health.retry_in, health.queued) == ("open", 25.0, 0)


async def test_to_dict_is_json_with_nan_as_none() -> None:
    """``to_dict()`` survives ``json.dumps``; a non-finite figure becomes ``null``."""
    health = UpstreamHealth(upstream=A, breaker="open", retry_in=math.inf, error_rate=math.nan)
    snapshot = HealthSnapshot.of([health, UpstreamHealth(upstream=B, breaker="closed")])
    decoded = json.loads(json.dumps(snapshot.to_dict(), allow_nan=False))
    assert decoded["status"] == "degraded"
    assert decoded["upstreams"][A]["retry_in"] is None
    assert decoded["upstreams"][A]["error_rate"] is None
    assert decoded["upstreams"][B] == {
        "upstream": B, "breaker": "closed", "retry_in": None, "budget_left": None,
        "error_rate": None, "latency_p50": None, "latency_p99": None, "in_flight": None,
        "queued": None, "requests": 0,
    }  # fmt: skip


async def test_client_health_reads_its_pipeline() -> None:
    """``AsyncClient.health()`` is its pipeline's: the default stack's breaker, budget and
    metrics all report the upstream after one failed request."""
    clock = FakeClock()
    plugins = default_plugins(HttpSettings(max_retries=0), clock=clock, sleep=clock.sleep)
    async with AsyncClient(A, plugins=plugins, terminal=MockTerminal(failing)) as client:
        await client.get("/x")
        snapshot = await client.health()
    health = snapshot.upstreams[A]
    assert health.breaker == "closed"
    assert health.budget_left is not None
    assert health.budget_left >= 0
    assert (health.requests, health.error_rate) == (1, 1.0)
