"""Shared helpers for integration tests against a real ChaosServer on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from httprail import AsyncClient, HttpSettings
from httprail.terminals import AiohttpTerminal, HttpxTerminal
from httprail.testing import ChaosServer

from ._redis_server import redis_server, redis_url  # noqa: F401 - fixtures of test_redis_*
from ._terminals import KINDS

# Backoff windows small enough that tests run in milliseconds, with the real sleep.
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}

ClientFactory = Callable[..., AsyncClient]


@pytest.fixture
async def make_client(chaos_server: ChaosServer) -> AsyncIterator[ClientFactory]:
    """Build clients aimed at the chaos server; all are closed after the test."""
    clients: list[AsyncClient] = []

    def factory(
        *, plugins: Any = None, terminal: str | None = None, **settings: Any
    ) -> AsyncClient:
        """``terminal``: "httpx" or "aiohttp" (default: the client's own default)."""
        built = HttpSettings(**{**FAST, **settings})
        chosen = {None: None, "httpx": HttpxTerminal, "aiohttp": AiohttpTerminal}[terminal]
        client = AsyncClient(
            chaos_server.url,
            plugins=plugins,
            settings=built,
            terminal=None if chosen is None else chosen(built),
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


def pool_state(terminal: object) -> tuple[int, int]:
    """``(in use, idle)`` connections of an httpx or aiohttp terminal's pool (their internals)."""
    if isinstance(terminal, HttpxTerminal):
        connections = terminal.client._transport._pool.connections  # type: ignore[attr-defined]
        idle = sum(1 for connection in connections if connection.is_idle())
        return len(connections) - idle, idle
    assert isinstance(terminal, AiohttpTerminal), terminal
    connector = terminal.session.connector
    assert connector is not None
    idle = sum(len(held) for held in connector._conns.values())  # type: ignore[attr-defined]
    return len(connector._acquired), idle  # type: ignore[attr-defined]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each terminal by name (``httpx``, ``aiohttp``, ``curl``), for conformance-style tests."""
    name: str = request.param
    return name
