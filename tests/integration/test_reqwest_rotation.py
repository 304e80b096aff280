"""HTTP/2 connections a server rotates or drops under ``PyreqwestTerminal``: the same errors as
``HttpxTerminal`` gives (``ConnectionRotatedError`` not counted against the upstream, ordinary
counted errors for a connection that never answered), against a scripted h2c server. The
default stack on it over a real hypercorn rotating its TLS connections is played in
``test_http2_rotation.py``, beside ``HttpxTerminal``.

Requests the server refused unprocessed (a GOAWAY naming an earlier stream, ``REFUSED_STREAM``)
never reach the terminal as errors: hyper sends them again by itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from returns.result import Success

from httprail import (
    AsyncClient,
    ConnectionRotatedError,
    HttpSettings,
    ProtocolError,
    ReadError,
)
from httprail.terminals import PyreqwestTerminal, _reqwest_errors

from ._h2_server import H2Server

pytest.importorskip("pyreqwest")
pytestmark = pytest.mark.timeout(120)


def bare(server: H2Server) -> AsyncClient:
    """No stage: what the terminal itself returns, over h2c."""
    terminal = PyreqwestTerminal(HttpSettings(trust_env=False), h2c=True)
    return AsyncClient(server.url, plugins=[], terminal=terminal)


async def send(client: AsyncClient, method: str = "GET") -> Any:
    return await client.request(method, "/x", content=b"{}" if method == "POST" else None)


async def test_a_request_in_flight_when_a_used_connection_ends_is_connection_rotated() -> None:
    """The connection answered, then ended (a GOAWAY naming the request, or no word at all)
    with the request on it: ConnectionRotatedError, which may have been processed and is not
    counted against the upstream."""
    for action in ("rotate", "vanish"):
        async with H2Server({0: {2: action}}) as server, bare(server) as client:
            first, second = await send(client, "POST"), await send(client, "POST")
        assert isinstance(first, Success)
        error = second.failure()
        assert isinstance(error, ConnectionRotatedError), action
        assert (error.counts_against_upstream, error.never_processed) == (False, False)
        assert "closed a used connection" in str(error)
        assert server.processed == [(0, 1), (0, 3)]


async def test_a_connection_that_ends_once_the_head_came_is_connection_rotated() -> None:
    """The connection ends after the response head, during pyreqwest's read-ahead or while
    the rest of a larger body is read: it had answered, so ConnectionRotatedError."""
    for action in ("head+vanish", "part+vanish"):
        async with H2Server({0: {1: action}}) as server, bare(server) as client:
            error = (await send(client)).failure()
        assert isinstance(error, ConnectionRotatedError), action
        assert "closed a used connection" in str(error)  # the end, or a reset, of it


async def test_every_stream_one_break_cuts_is_connection_rotated() -> None:
    """Three requests in flight on a used connection that ends: all three are rotated (the
    first failure does not make the others look like a fresh connection's)."""
    async with H2Server({0: {2: "hold", 3: "hold", 4: "vanish"}}) as server, bare(server) as c:
        assert isinstance(await send(c), Success)
        outcomes = await asyncio.gather(send(c), send(c), send(c))
    assert [type(o.failure()) for o in outcomes] == [ConnectionRotatedError] * 3


async def test_a_connection_that_never_answered_fails_as_usual(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh connection that ends before answering says nothing good about the server: a
    counted ReadError, also for the new connection after a rotation (once the grace for
    requests sent on the dead one has passed, here at once)."""
    monkeypatch.setattr(_reqwest_errors, "GRACE", 0.0)
    script = {0: {1: "answer", 2: "vanish"}, 1: {1: "vanish"}, 2: {1: "answer"}}
    async with H2Server(script) as server, bare(server) as client:
        outcomes = [await send(client) for _ in range(4)]
    kinds = [type(o.failure()) if not isinstance(o, Success) else Success for o in outcomes]
    assert kinds == [Success, ConnectionRotatedError, ReadError, Success]
    assert outcomes[2].failure().counts_against_upstream
    async with H2Server({0: {1: "vanish"}}) as server, bare(server) as client:
        error = (await send(client)).failure()
    assert type(error) is ReadError


async def test_refused_streams_are_sent_again_by_hyper_and_processed_once() -> None:
    """A POST above the GOAWAY's last stream, or reset with REFUSED_STREAM, was not processed:
    hyper sends it again (a new connection, a new stream) and the server processes it once."""
    async with H2Server({0: {2: "refuse"}}) as server, bare(server) as client:
        outcomes = [await send(client, "POST") for _ in range(2)]
    assert all(isinstance(o, Success) for o in outcomes)
    assert server.processed == [(0, 1), (1, 1)]
    async with H2Server({0: {1: "reset-refused"}}) as server, bare(server) as client:
        assert isinstance(await send(client, "POST"), Success)
    assert server.processed == [(0, 3)]


async def test_a_stream_reset_with_an_error_is_a_protocol_error() -> None:
    """RST_STREAM INTERNAL_ERROR is the server's answer about this request: ProtocolError,
    counted, as on HttpxTerminal."""
    async with H2Server({0: {1: "reset-error"}}) as server, bare(server) as client:
        error = (await send(client)).failure()
    assert type(error) is ProtocolError
    assert error.counts_against_upstream


async def test_a_new_client_forgets_what_the_old_one_saw() -> None:
    """When the terminal builds its pyreqwest client again (another event loop, a fork), a
    connection that never answered is not taken for the old one that did."""
    async with H2Server({0: {1: "answer"}, 1: {1: "vanish"}}) as server:
        terminal = PyreqwestTerminal(HttpSettings(trust_env=False), h2c=True)
        async with AsyncClient(server.url, plugins=[], terminal=terminal) as client:
            assert isinstance(await send(client), Success)
            terminal._discard_backend()  # what a new loop or a fork does
            error = (await send(client)).failure()
    assert type(error) is ReadError
