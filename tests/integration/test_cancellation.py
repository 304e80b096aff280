"""Cancellation propagates and leaks nothing: no task, no connection, no breaker probe slot."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from httprail import CircuitBreakerOpenError, Success
from httprail.middleware import CircuitBreaker, Retry
from httprail.testing import ChaosServer, Fault, Reply

from ._terminals import cancelled_after
from .conftest import ClientFactory, pool_state


async def wait_for_count(server: ChaosServer, path: str, count: int, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while server.count(path) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def open_connections(terminal: object) -> int:
    return sum(pool_state(terminal))


@pytest.mark.parametrize("terminal", ["aiohttp", "httpx"])
async def test_cancelling_1000_in_flight_requests_leaks_nothing(
    chaos_server: ChaosServer, make_client: ClientFactory, terminal: str
) -> None:
    chaos_server.script("/hang", Reply.fail(Fault.HANG))
    client = make_client(terminal=terminal)  # default stack, pool of 100 connections
    tasks = [asyncio.create_task(client.get("/hang")) for _ in range(1000)]
    await wait_for_count(chaos_server, "/hang", 100)
    assert chaos_server.count("/hang") == 100  # the pool is full; 900 wait for a connection
    assert open_connections(client.pipeline.terminal) == 100

    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert open_connections(client.pipeline.terminal) == 0
    assert chaos_server.count("/hang") == 100  # nothing was retried after the cancel

    chaos_server.script("/hang", Reply.json({"ok": 1}))  # and the client still works
    assert isinstance(await client.get("/hang"), Success)


async def test_cancelled_half_open_probe_releases_the_slot(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=0.1)
    client = make_client(plugins=[Retry(max_retries=0), breaker])
    chaos_server.script("/svc", Reply.status(503))
    for _ in range(2):
        await client.get("/svc")
    await asyncio.sleep(0.15)

    chaos_server.script("/svc", Reply.fail(Fault.HANG))
    probe = asyncio.create_task(client.get("/svc"))
    await wait_for_count(chaos_server, "/svc", 3)
    blocked = await client.get("/svc")  # the slot is taken by the hung probe
    assert isinstance(blocked.failure(), CircuitBreakerOpenError)
    probe.cancel()
    results = await asyncio.gather(probe, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)

    chaos_server.script("/svc", Reply.json({"ok": 1}))
    assert isinstance(await client.get("/svc"), Success)  # a new probe was admitted
    assert chaos_server.count("/svc") == 4


async def test_cancelling_a_plain_httpx_request_for_comparison(chaos_server: ChaosServer) -> None:
    """The same cancellation through raw httpx also leaves no connection (sanity baseline)."""
    chaos_server.script("/hang", Reply.fail(Fault.HANG))
    async with httpx.AsyncClient(base_url=chaos_server.url) as raw:
        task = asyncio.create_task(raw.get("/hang"))
        await wait_for_count(chaos_server, "/hang", 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert len(raw._transport._pool.connections) == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("terminal", ["aiohttp", "httpx"])
async def test_a_cancel_at_any_await_of_a_fresh_request_leaks_no_pool_slot(
    chaos_server: ChaosServer, make_client: ClientFactory, terminal: str
) -> None:
    """Cancel a request after 0, 1, 2, … event-loop turns: each await it passes gets a cancel.

    Two of those awaits, in httpcore 1.0.x, come after a new connection was assigned to the
    request and before the request used it (encode/httpcore#1093): httpcore leaves that
    connection in its pool for good, and once ``max_connections`` of them pile up every request
    times out. With a pool of two, a leaked slot shows as a connection still in use.
    """
    client = make_client(terminal=terminal, max_connections=2, max_keepalive=0)
    landed = 0
    for turns in range(40):
        if not await cancelled_after(client, turns):
            continue
        landed += 1
        outcome = await client.get("/ok", params={"after": turns})
        assert isinstance(outcome, Success), (turns, outcome)
        in_use, _idle = pool_state(client.pipeline.terminal)
        assert in_use == 0, (turns, client.pipeline.terminal)
    assert landed >= 3  # the loop reached the request's awaits, not just its end
