"""MultiTerminal over real ChaosServers on 127.0.0.1: a refusing origin is failed over, a
response or an unsafe error is not, and round robin spreads requests evenly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from httprail import AsyncClient, ConnectError, HttpSettings, ReadError, ServerStatusError
from httprail.terminals import HttpxTerminal, MultiTerminal
from httprail.testing import ChaosServer, Fault, Reply

SETTINGS = HttpSettings(timeout_connect=2, timeout_read=5, http2=False)


@pytest.fixture
def servers() -> Iterator[list[ChaosServer]]:
    """Three running chaos servers."""
    started = [ChaosServer().start() for _ in range(3)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def refused_origin() -> str:
    """The origin of a server that was started and stopped: connections are refused."""
    server = ChaosServer().start()
    origin = server.url
    server.stop()
    return origin


@pytest.fixture
async def http() -> AsyncIterator[HttpxTerminal]:
    terminal = HttpxTerminal(SETTINGS)
    yield terminal
    await terminal.aclose()


def client_for(terminal: MultiTerminal) -> AsyncClient:
    # The base URL names the service; each backend's origin replaces it.
    return AsyncClient("http://service.internal", plugins=[], terminal=terminal, settings=SETTINGS)


async def test_a_refusing_origin_is_failed_over_and_then_skipped(
    servers: list[ChaosServer], refused_origin: str, http: HttpxTerminal
) -> None:
    live = servers[0]
    terminal = MultiTerminal([(http, refused_origin), (http, live.url)], failure_threshold=2)
    async with client_for(terminal) as client:
        for _ in range(5):
            outcome = await client.post("/orders?x=1", json={"n": 1})
            assert outcome.unwrap().status_code == 200
    seen = live.requests_for("/orders")
    assert len(seen) == 5
    assert seen[0].method == "POST"
    assert seen[0].query == "x=1"
    assert seen[0].body == b'{"n":1}'
    assert seen[0].header("host") == f"127.0.0.1:{live.port}"
    dead, alive = terminal.health()
    assert (dead.state, dead.requests, dead.failures) == ("unhealthy", 2, 2)
    assert isinstance(dead.last_error, ConnectError)
    assert (alive.state, alive.requests) == ("healthy", 5)


async def test_every_origin_refusing_gives_a_connect_error(
    refused_origin: str, http: HttpxTerminal
) -> None:
    terminal = MultiTerminal([(http, refused_origin), (http, refused_origin)])
    async with client_for(terminal) as client:
        outcome = await client.get("/x")
    assert isinstance(outcome.failure(), ConnectError)
    assert [h.failures for h in terminal.health()] == [1, 1]


async def test_a_5xx_response_is_not_failed_over(
    servers: list[ChaosServer], http: HttpxTerminal
) -> None:
    first, second = servers[0], servers[1]
    first.script("/busy", Reply.status(503))
    terminal = MultiTerminal([(http, first.url), (http, second.url)])
    async with client_for(terminal) as client:
        outcome = await client.get("/busy")
    assert isinstance(outcome.failure(), ServerStatusError)
    assert (first.count("/busy"), second.count("/busy")) == (1, 0)
    assert terminal.health()[0].consecutive_failures == 0


@pytest.mark.parametrize(("method", "failed_over"), [("GET", True), ("POST", False)])
async def test_a_reset_connection_fails_over_only_an_idempotent_request(
    servers: list[ChaosServer], http: HttpxTerminal, method: str, failed_over: bool
) -> None:
    first, second = servers[0], servers[1]
    first.script("/reset", Reply.fail(Fault.RESET))
    terminal = MultiTerminal([(http, first.url), (http, second.url)])
    async with client_for(terminal) as client:
        outcome = await client.request(method, "/reset", content=b"payload")
    assert first.count("/reset") == 1
    assert second.count("/reset") == (1 if failed_over else 0)
    if failed_over:
        assert outcome.unwrap().status_code == 200
    else:
        assert isinstance(outcome.failure(), ReadError)


async def test_round_robin_spreads_requests_evenly(
    servers: list[ChaosServer], http: HttpxTerminal
) -> None:
    terminal = MultiTerminal([(http, s.url) for s in servers], strategy="round_robin")
    async with client_for(terminal) as client:
        for _ in range(30):
            assert (await client.get("/spread")).unwrap().status_code == 200
    assert [s.count("/spread") for s in servers] == [10, 10, 10]


async def test_round_robin_around_a_dead_origin_keeps_the_rest_even(
    servers: list[ChaosServer], refused_origin: str, http: HttpxTerminal
) -> None:
    origins = [servers[0].url, refused_origin, servers[1].url]
    terminal = MultiTerminal(
        [(http, origin) for origin in origins], strategy="round_robin", failure_threshold=1
    )
    async with client_for(terminal) as client:
        for _ in range(40):
            assert (await client.get("/spread")).unwrap().status_code == 200
    assert [servers[0].count("/spread"), servers[1].count("/spread")] == [20, 20]
    assert terminal.health()[1].failures == 1
