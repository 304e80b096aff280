"""Shared helpers for integration tests against a real ChaosServer on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from httprail import AsyncClient, HttpSettings
from httprail.testing import ChaosServer

# Backoff windows small enough that tests run in milliseconds, with the real sleep.
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}

ClientFactory = Callable[..., AsyncClient]


@pytest.fixture
async def make_client(chaos_server: ChaosServer) -> AsyncIterator[ClientFactory]:
    """Build clients aimed at the chaos server; all are closed after the test."""
    clients: list[AsyncClient] = []

    def factory(*, plugins: Any = None, **settings: Any) -> AsyncClient:
        client = AsyncClient(
            chaos_server.url, plugins=plugins, settings=HttpSettings(**{**FAST, **settings})
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()
