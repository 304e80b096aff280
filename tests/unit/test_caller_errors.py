"""Errors that are the caller's or the environment's never count against the upstream.

``counts_against_upstream`` is false for an invalid request, a failed token provider and a
closed event loop: the breaker, the retry budget and the hedge's latency record ignore them,
and Retry does not repeat them.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from httprail import AuthError, CircuitState, InvalidRequestError, Pipeline, RequestError
from httprail.middleware import CircuitBreaker, Hedge, Retry, RetryBudget
from httprail.middleware._circuit_breaker import default_is_failure
from httprail.terminals._mapping import map_exception
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/items"
UPSTREAM = "https://api.test"

CALLERS_ERRORS = [
    pytest.param(lambda r: InvalidRequestError("bad header", request=r), id="invalid-request"),
    pytest.param(lambda r: AuthError("token provider failed", request=r), id="auth"),
    pytest.param(lambda r: map_exception(RuntimeError("Event loop is closed"), r), id="loop"),
]


@pytest.mark.parametrize("make", CALLERS_ERRORS)
async def test_the_callers_errors_neither_open_the_breaker_nor_spend_the_budget(
    make: Callable[[httpx.Request], RequestError],
) -> None:
    """Ten such errors in a row: one request each (no retry), the breaker (threshold 2) stays
    closed, the budget counts no request and the hedge keeps no latency sample."""
    clock = FakeClock()
    budget = RetryBudget(clock=clock)
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    hedge = Hedge(delay=10.0)
    terminal = MockTerminal(make)
    pipeline = Pipeline(
        [Retry(max_retries=3, budget=budget, sleep=clock.sleep, clock=clock), breaker, hedge],
        terminal,
    )
    for _ in range(10):
        outcome = await pipeline.send(httpx.Request("GET", URL))
        error = outcome.failure()
        assert isinstance(error, RequestError)
        assert not error.counts_against_upstream
    assert len(terminal.requests) == 10
    assert await breaker.state(UPSTREAM) is CircuitState.CLOSED
    assert budget.snapshot() == {}
    assert hedge.snapshot()[UPSTREAM].samples == 0


def test_a_closed_loop_maps_to_an_invalid_request_that_names_the_loop() -> None:
    """``RuntimeError: Event loop is closed`` from a backend is the environment's error."""
    request = httpx.Request("GET", URL)
    error = map_exception(RuntimeError("Event loop is closed"), request)
    assert isinstance(error, InvalidRequestError)
    assert "another event loop" in str(error)
    assert not default_is_failure(error)


def test_a_budget_refund_of_an_unknown_key_changes_nothing() -> None:
    """Refunding a key that has no ledger (never deposited, or forgotten) is a no-op."""
    budget = RetryBudget(clock=FakeClock())
    budget.refund(UPSTREAM)
    assert budget.snapshot() == {}
