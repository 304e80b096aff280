"""The failure-rate breaker against a real fault server: what the server saw and what callers got.

The breaker's clock is a ``FakeClock`` (the window and the break are moved by hand); the
requests, the server and its random faults are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from httprail import (
    AsyncClient,
    BreakerEvent,
    CircuitBreakerOpenError,
    CircuitState,
    Event,
    Failure,
    HttpSettings,
    ServerStatusError,
    Success,
)
from httprail.middleware import CircuitBreaker
from httprail.testing import ChaosServer, FakeClock, Reply

PATH = "/svc"
# Consecutive mode effectively off (threshold 100), so what trips is the ratio.
RATE = HttpSettings(
    circuit_breaker_threshold=100,
    circuit_breaker_cooldown=5,
    circuit_breaker_failure_ratio=0.5,
    circuit_breaker_window=30,
    circuit_breaker_min_throughput=20,
    circuit_breaker_half_open_probes=3,
)


class Harness:
    def __init__(self, server: ChaosServer, **overrides: Any) -> None:
        self.clock = FakeClock()
        self.breaker = CircuitBreaker.from_settings(RATE, clock=self.clock, **overrides)
        self.events: list[Event] = []
        self.client = AsyncClient(
            server.url, plugins=[self.breaker], observers=[self.events.append]
        )
        self.upstream = server.url

    async def state(self) -> CircuitState:
        return await self.breaker.state(self.upstream)

    def moves(self) -> list[tuple[CircuitState, CircuitState, str]]:
        return [(e.old, e.new, e.reason) for e in self.events if isinstance(e, BreakerEvent)]


@pytest.fixture
async def harness(chaos_server: ChaosServer) -> AsyncIterator[Harness]:
    made = Harness(chaos_server)
    yield made
    await made.client.aclose()


def is_rejection(outcome: Any) -> bool:
    return isinstance(outcome, Failure) and isinstance(outcome.failure(), CircuitBreakerOpenError)


async def test_twenty_percent_random_503s_do_not_trip_a_half_ratio(
    chaos_server: ChaosServer, harness: Harness
) -> None:
    chaos_server.script_random(PATH, fail_ratio=0.2, seed=0)
    outcomes = []
    for _ in range(200):
        outcomes.append(await harness.client.get(PATH))
        harness.clock.advance(0.1)  # 200 calls over 20 s: the window always holds them all
    assert chaos_server.count(PATH) == 200  # every call reached the server
    assert not any(is_rejection(o) for o in outcomes)
    failed = sum(isinstance(o, Failure) for o in outcomes)
    assert 20 <= failed <= 60  # roughly 20% failed, and each one was returned to its caller
    assert await harness.state() is CircuitState.CLOSED
    assert harness.moves() == []


async def test_eighty_percent_random_503s_trip_once_min_throughput_is_reached(
    chaos_server: ChaosServer, harness: Harness
) -> None:
    chaos_server.script_random(PATH, fail_ratio=0.8, seed=0)
    outcomes = [await harness.client.get(PATH) for _ in range(100)]
    assert chaos_server.count(PATH) == 20  # it opened on the 20th call, the minimum throughput
    assert all(is_rejection(o) for o in outcomes[20:])
    assert await harness.state() is CircuitState.OPEN
    ((old, new, reason),) = harness.moves()
    assert (old, new) == (CircuitState.CLOSED, CircuitState.OPEN)
    assert reason.startswith("failure ratio 0.")
    assert reason.endswith("over 20 calls in 30s")


async def test_after_healing_the_server_sees_at_most_three_probes_while_half_open(
    chaos_server: ChaosServer, harness: Harness
) -> None:
    chaos_server.script(PATH, Reply.status(503))
    while await harness.state() is CircuitState.CLOSED:
        await harness.client.get(PATH)
    seen_while_closed = chaos_server.count(PATH)
    assert seen_while_closed == 20

    harness.clock.advance(5)  # the break is over
    chaos_server.script(PATH, Reply.slow(0.2))  # healed, but slow enough for calls to overlap
    outcomes = await asyncio.gather(*(harness.client.get(PATH) for _ in range(20)))
    assert chaos_server.count(PATH) - seen_while_closed == 3  # the probes, and nothing else
    assert sum(isinstance(o, Success) for o in outcomes) == 3
    assert sum(is_rejection(o) for o in outcomes) == 17
    assert await harness.state() is CircuitState.CLOSED
    assert harness.moves()[-1] == (
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
        "3 probes succeeded",
    )
    assert isinstance(await harness.client.get(PATH), Success)


async def test_a_failed_probe_on_the_real_server_doubles_the_break(
    chaos_server: ChaosServer, harness: Harness
) -> None:
    chaos_server.script(PATH, Reply.status(503))
    while await harness.state() is CircuitState.CLOSED:
        await harness.client.get(PATH)
    harness.clock.advance(5)
    probe = await harness.client.get(PATH)
    assert isinstance(probe.failure(), ServerStatusError)
    rejected = (await harness.client.get(PATH)).failure()
    assert isinstance(rejected, CircuitBreakerOpenError)
    assert rejected.retry_after == pytest.approx(10)
    assert chaos_server.count(PATH) == 21
