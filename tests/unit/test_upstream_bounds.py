"""Per-upstream state stays bounded when a client talks to more hosts than the bound."""

from __future__ import annotations

import httpx
import pytest

from httprail import ConfigError, Pipeline, Success
from httprail.middleware import (
    Bulkhead,
    CircuitBreaker,
    Hedge,
    Metrics,
    RateLimiter,
    Retry,
    RetryBudget,
    default_plugins,
)
from httprail.state import MemoryStore
from httprail.testing import FakeClock, MockTerminal

BOUND = 50
HOSTS = 500


def url(n: int) -> str:
    return f"https://host-{n}.test/item"


async def test_every_stage_keeps_at_most_its_bound_of_upstreams(fake_clock: FakeClock) -> None:
    """Breaker store, retry budget, rate limiter, hedge, bulkhead and metrics each hold at most
    their bound of upstreams after 500 distinct hosts (each failing once), and the metrics'
    totals still count every request."""
    budget = RetryBudget(max_keys=BOUND, clock=fake_clock)
    store: MemoryStore[object] = MemoryStore(max_keys=BOUND)
    metrics = Metrics(max_upstreams=BOUND)
    limiter = RateLimiter(rate=1000, max_keys=BOUND, clock=fake_clock, sleep=fake_clock.sleep)
    hedge = Hedge(delay=5, max_upstreams=BOUND, clock=fake_clock, sleep=fake_clock.sleep)
    bulkhead = Bulkhead(max_concurrent=4)
    breaker = CircuitBreaker(store=store, clock=fake_clock)  # type: ignore[arg-type]
    retry = Retry(max_retries=1, budget=budget, clock=fake_clock, sleep=fake_clock.sleep)
    stages = [metrics, retry, limiter, hedge, bulkhead, breaker]
    replies = iter([httpx.Response(500), httpx.Response(200)] * HOSTS)
    pipeline = Pipeline(stages, MockTerminal(lambda request: next(replies)))  # type: ignore[arg-type]
    for n in range(HOSTS):
        outcome = await pipeline.send(httpx.Request("GET", url(n)))
        assert isinstance(outcome, Success)
    assert len(store) <= BOUND
    assert budget.tracked_keys <= BOUND
    assert len(limiter.keys()) <= BOUND
    assert len(hedge.snapshot()) <= BOUND
    assert bulkhead.keys() == []
    figures = metrics.snapshot()
    assert len(figures) <= BOUND + 1  # and the row of the forgotten ones
    assert sum(f.requests for f in figures.values()) == HOSTS
    assert sum(f.retries for f in figures.values()) == HOSTS
    assert figures[Metrics.OTHER].requests > 0


async def test_an_open_circuit_is_never_forgotten_before_its_break(
    fake_clock: FakeClock,
) -> None:
    """A bounded breaker store keeps every circuit that is open within its break, past the
    bound, and forgets them once their break is over."""
    breaker = CircuitBreaker(
        failure_threshold=1,
        cooldown=30,
        store=MemoryStore(max_keys=BOUND),
        clock=fake_clock,
    )
    pipeline = Pipeline([breaker], MockTerminal(lambda request: httpx.Response(503)))
    opened = BOUND + 20
    for n in range(opened):
        await pipeline.send(httpx.Request("GET", url(n)))
    assert len(breaker.store) == opened  # type: ignore[arg-type]
    assert all(
        [(await breaker.state(f"https://host-{n}.test")).value == "open" for n in range(opened)]
    )
    fake_clock.advance(31)
    for n in range(opened, opened + BOUND):
        await pipeline.send(httpx.Request("GET", url(n)))
    kept = breaker.store.snapshot()  # type: ignore[attr-defined]
    assert set(kept) == {f"https://host-{n}.test" for n in range(opened, opened + BOUND)}


def test_the_default_stack_is_bounded_by_default() -> None:
    """The default stack's per-upstream tables are bounded at 10,000 upstreams."""
    plugins = default_plugins()
    [breaker] = [p for p in plugins if isinstance(p, CircuitBreaker)]
    [metrics] = [p for p in plugins if isinstance(p, Metrics)]
    assert isinstance(breaker.store, MemoryStore)
    assert breaker.store.max_keys == 10_000
    assert breaker.store.evictable == breaker.forgettable
    assert metrics.max_upstreams == 10_000


async def test_a_store_without_a_bound_keeps_everything() -> None:
    """``MemoryStore(max_keys=None)`` never forgets a key."""
    store: MemoryStore[int] = MemoryStore(max_keys=None)
    for n in range(3 * BOUND):
        await store.update(str(n), lambda old: (1, None))
    assert len(store) == 3 * BOUND


async def test_the_store_forgets_the_least_recently_written_key() -> None:
    """Past its bound the store forgets the keys written least recently until a tenth of the
    room is free, never the one just written, and a rewritten key counts as recent."""
    store: MemoryStore[int] = MemoryStore(max_keys=10)
    for n in range(10):
        await store.update(str(n), lambda old: (1, None))
    await store.update("0", lambda old: (2, None))  # "0" is now the most recent
    await store.update("new", lambda old: (1, None))
    assert set(store.snapshot()) == {"0", "3", "4", "5", "6", "7", "8", "9", "new"}
    assert await store.get("0") == 2


@pytest.mark.parametrize(
    ("build", "option"),
    [
        (lambda: MemoryStore(max_keys=0), "max_keys"),
        (lambda: Metrics(max_upstreams=0), "max_upstreams"),
        (lambda: Hedge(max_upstreams=True), "max_upstreams"),
    ],
)
def test_a_bad_bound_is_a_config_error(build: object, option: str) -> None:
    """A bound that is not an int >= 1 is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=option):
        build()  # type: ignore[operator]


async def test_an_upstream_used_since_the_last_sweep_outlives_an_idle_older_one(
    fake_clock: FakeClock,
) -> None:
    """Metrics and the hedge forget by second chance: once full, an upstream with a request
    since the last sweep is kept and an older idle one goes (folded into Metrics.OTHER)."""
    metrics = Metrics(max_upstreams=10)
    hedge = Hedge(delay=5, max_upstreams=10, clock=fake_clock, sleep=fake_clock.sleep)
    pipeline = Pipeline([metrics, hedge], MockTerminal(lambda request: httpx.Response(200)))
    for n in [*range(11), 1, 11]:  # the 11th sweeps once; host 1 is used again, then 11 comes
        await pipeline.send(httpx.Request("GET", url(n)))
    kept = {f"https://host-{n}.test" for n in (1, *range(3, 12))}
    assert set(hedge.snapshot()) == kept
    figures = metrics.snapshot()
    assert set(figures) == {*kept, Metrics.OTHER}
    assert figures["https://host-1.test"].requests == 2
    assert figures[Metrics.OTHER].requests == 2  # hosts 0 and 2
