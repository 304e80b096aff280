"""The documented example: Retry outside CircuitBreaker protects a failing server; reversed, it
does not (docs/middleware-order.md)."""

from __future__ import annotations

import httpx

from httprail import CircuitBreakerOpenError, Pipeline
from httprail.middleware import CircuitBreaker, Retry
from httprail.testing import FakeClock, MockTerminal


async def run(order: str) -> tuple[int, list[str]]:
    clock = FakeClock()
    terminal = MockTerminal(lambda request: httpx.Response(503))
    retry = Retry(max_retries=3, sleep=clock.sleep, clock=clock)
    breaker = CircuitBreaker(failure_threshold=5, cooldown=30, clock=clock)
    plugins = [retry, breaker] if order == "retry-outside" else [breaker, retry]
    pipeline = Pipeline(plugins, terminal)  # type: ignore[list-item]
    kinds = []
    for _ in range(8):
        outcome = await pipeline.send(httpx.Request("GET", "https://down.test/x"))
        error = outcome.failure()
        last = getattr(error, "last", error)
        kinds.append(type(last).__name__)
    return len(terminal.requests), kinds


async def test_retry_outside_the_breaker_stops_after_five_requests() -> None:
    sent, kinds = await run("retry-outside")
    assert sent == 5
    assert kinds == ["ServerStatusError"] + [CircuitBreakerOpenError.__name__] * 7


async def test_breaker_outside_retry_lets_twenty_requests_through() -> None:
    sent, kinds = await run("breaker-outside")
    assert sent == 20
    assert kinds == ["ServerStatusError"] * 5 + [CircuitBreakerOpenError.__name__] * 3
