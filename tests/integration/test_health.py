"""The health snapshot against a real fault server: a few failures, then what ``health()`` shows."""

from __future__ import annotations

import json

from httprail import AsyncClient, Client, HttpSettings
from httprail.middleware import default_plugins
from httprail.testing import ChaosServer, FakeClock, Reply

PATH = "/svc"
SETTINGS = HttpSettings(
    max_retries=1,
    backoff_base=0.01,
    circuit_breaker_threshold=3,
    circuit_breaker_cooldown=30,
)


async def test_failures_open_the_circuit_and_health_shows_it(chaos_server: ChaosServer) -> None:
    """After one success, two 503-answered requests (each retried once) open the breaker on the
    3rd failed attempt: health shows the only upstream open (status down) with the time to
    retry, the window's 3 requests and error rate, latency and the budget left."""
    clock = FakeClock()
    plugins = default_plugins(SETTINGS, clock=clock, sleep=clock.sleep)
    chaos_server.script(PATH, Reply.status(200), Reply.status(503))
    async with AsyncClient(chaos_server.url, plugins=plugins) as client:
        assert (await client.get(PATH)).unwrap().status_code == 200
        healthy = await client.health()
        assert healthy.status == "ok"
        await client.get(PATH)
        await client.get(PATH)  # its 1st attempt opens the circuit, which refuses its retry
        snapshot = await client.health()

    assert chaos_server.count(PATH) == 4
    health = snapshot.upstreams[chaos_server.url]
    assert snapshot.status == "down"  # the only upstream is open
    assert health.breaker == "open"
    assert health.retry_in is not None
    assert 0 < health.retry_in <= 30
    assert health.requests == 3
    # 1 success and 1 request given up on after two 503s reached the upstream; the last
    # request's final word was the open circuit (the caller's wait, not the upstream's error).
    assert health.error_rate == 0.5
    assert health.latency_p50 is not None
    assert health.latency_p99 is not None
    assert health.in_flight is None  # no bulkhead in the default stack: not counted
    assert health.budget_left == 100 - 2  # the floor (10/s over 10 s) less 2 retries
    assert json.loads(json.dumps(snapshot.to_dict()))["status"] == "down"


def test_sync_client_health(chaos_server: ChaosServer) -> None:
    """``Client.health()`` reads the same snapshot on the client's loop."""
    chaos_server.script(PATH, Reply.status(500))
    with Client(chaos_server.url, settings=HttpSettings(max_retries=0)) as client:
        client.get(PATH)
        snapshot = client.health()
    health = snapshot.upstreams[chaos_server.url]
    assert (health.requests, health.error_rate, health.breaker) == (1, 1.0, "closed")
