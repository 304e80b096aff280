"""Error text says what happened, once, in plain words (no made-up status, no ``ssl:default``
on plain http, no chain of exception names)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from httprail import AsyncClient, ConnectError, InvalidRequestError, ProtocolError
from httprail.terminals import AiohttpTerminal, CurlTerminal, HttpxTerminal

from .._net import closed_port
from ._raw_server import RawServer


@pytest.fixture
async def garbage_url() -> AsyncIterator[str]:
    async with RawServer(b"garbage\r\n\r\n") as server:
        yield f"{server.url}/"


async def test_a_refused_connection_says_so_without_aiohttps_wording() -> None:
    port = closed_port()
    async with AsyncClient(plugins=[], terminal=AiohttpTerminal()) as client:
        error = (await client.get(f"http://127.0.0.1:{port}/x")).failure()
    assert isinstance(error, ConnectError)
    assert error.message == f"ConnectError: cannot connect to 127.0.0.1:{port}: connection refused"
    assert "ssl:default" not in str(error)
    assert "ClientConnectorError" not in str(error)


async def test_a_garbage_status_line_is_not_called_a_400(garbage_url: str) -> None:
    async with AsyncClient(plugins=[], terminal=AiohttpTerminal()) as client:
        error = (await client.get(garbage_url)).failure()
    assert isinstance(error, ProtocolError)
    assert "the response is not valid HTTP: Bad status line" in error.message
    assert "400" not in error.message
    assert "b'garbage'" in error.message


@pytest.mark.parametrize("terminal", [AiohttpTerminal, HttpxTerminal, CurlTerminal])
@pytest.mark.parametrize("port", [0, 65536, 99999])
async def test_a_port_out_of_range_is_one_plain_invalid_request(
    terminal: type[AiohttpTerminal | HttpxTerminal | CurlTerminal], port: int
) -> None:
    async with AsyncClient(plugins=[], terminal=terminal()) as client:
        error = (await client.get(f"http://127.0.0.1:{port}/")).failure()
    assert isinstance(error, InvalidRequestError)
    assert error.message.endswith(f"port {port} is out of range (1-65535)")
    assert "Error:" not in error.message  # no exception names chained in front
