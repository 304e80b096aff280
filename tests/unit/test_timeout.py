"""Timeout: total and per-attempt deadlines become typed failures; other errors pass through."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from httprail import (
    ConfigError,
    Next,
    Outcome,
    Pipeline,
    RequestContext,
    RequestTimeoutError,
    Success,
    get_context,
    set_context,
)
from httprail.middleware import Timeout
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/x"


def slow(seconds: float) -> MockTerminal:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(seconds)
        return httpx.Response(200)

    return MockTerminal(handler)


async def test_fast_request_passes() -> None:
    outcome = await Pipeline([Timeout(1)], slow(0)).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)


@pytest.mark.parametrize("phase", ["total", "attempt"])
async def test_slow_request_fails_with_the_phase(phase: str) -> None:
    start = time.monotonic()
    outcome = await Pipeline([Timeout(0.05, phase=phase)], slow(5)).send(httpx.Request("GET", URL))  # type: ignore[arg-type]
    elapsed = time.monotonic() - start
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == phase
    assert 0.05 <= elapsed < 0.5


async def test_total_timeout_records_the_deadline() -> None:
    seen: list[RequestContext] = []

    class Spy:
        name = "spy"

        async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
            seen.append(get_context(request))
            return await call_next(request)

    clock = FakeClock()
    await Pipeline([Timeout(4, clock=clock), Spy()], slow(0)).send(httpx.Request("GET", URL))
    assert seen[0].deadline == clock() + 4


async def test_nearer_outer_deadline_wins_and_reports_total() -> None:
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(deadline=time.monotonic() + 0.05))
    outcome = await Pipeline([Timeout(5, phase="attempt")], slow(5)).send(request)
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "total"


async def test_deadline_already_passed_fails_without_sending() -> None:
    terminal = slow(0)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(deadline=time.monotonic() - 1))
    outcome = await Pipeline([Timeout(5)], terminal).send(request)
    assert isinstance(outcome.failure(), RequestTimeoutError)
    assert terminal.requests == []


async def test_a_timeout_error_not_ours_propagates() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise TimeoutError("someone else's")

    with pytest.raises(TimeoutError, match="someone else's"):
        await Pipeline([Timeout(5)], MockTerminal(handler)).send(httpx.Request("GET", URL))


async def test_outer_cancellation_propagates() -> None:
    task = asyncio.create_task(Pipeline([Timeout(5)], slow(5)).send(httpx.Request("GET", URL)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "3", True])
def test_bad_seconds_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError, match="Timeout"):
        Timeout(bad)  # type: ignore[arg-type]


def test_bad_phase_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="phase"):
        Timeout(1, phase="connect")  # type: ignore[arg-type]


async def test_one_timer_serves_many_requests_each_failing_at_its_own_deadline() -> None:
    timeout = Timeout(0.1)

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(float(request.url.params["sleep"]))
        return httpx.Response(200)

    pipeline = Pipeline([timeout], MockTerminal(handler))

    async def call(sleep: float, after: float) -> tuple[object, float]:
        await asyncio.sleep(after)
        start = time.monotonic()
        outcome = await pipeline.send(httpx.Request("GET", URL, params={"sleep": sleep}))
        return outcome, time.monotonic() - start

    results = await asyncio.gather(call(0.01, 0), call(5, 0.03), call(0.02, 0.05), call(5, 0.06))
    kinds = [type(outcome).__name__ for outcome, _ in results]
    assert kinds == ["Success", "Failure", "Success", "Failure"]
    for outcome, elapsed in (results[1], results[3]):
        assert isinstance(outcome.failure(), RequestTimeoutError)  # type: ignore[attr-defined]
        # its own deadline, 0.1 s after it began: the first request's would have ended it
        # sooner (at most 0.07 s after it began); the upper bound is only a hang guard
        assert 0.1 <= elapsed < 1.0


async def test_an_out_of_order_deadline_gets_its_own_timer() -> None:
    attempt = Timeout(1, phase="attempt")
    pipeline = Pipeline([attempt], slow(5))
    first = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))  # deadline now + 1
    await asyncio.sleep(0)
    clamped = httpx.Request("GET", URL)
    set_context(clamped, RequestContext(deadline=time.monotonic() + 0.05))  # earlier than first
    start = time.monotonic()
    error = (await pipeline.send(clamped)).failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "total"
    assert time.monotonic() - start < 0.5
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_the_same_stage_works_on_a_new_event_loop() -> None:
    timeout = Timeout(0.05)

    def run_on_fresh_loop() -> object:
        return asyncio.run(Pipeline([timeout], slow(5)).send(httpx.Request("GET", URL)))

    first = await asyncio.to_thread(run_on_fresh_loop)
    second = await asyncio.to_thread(run_on_fresh_loop)
    assert isinstance(first.failure(), RequestTimeoutError)  # type: ignore[attr-defined]
    assert isinstance(second.failure(), RequestTimeoutError)  # type: ignore[attr-defined]
