"""The reqwest terminal's bodies: a request's own read timeout is kept while a body arrives,
shorter or longer than reqwest's own (the settings'), and a body that breaks after
pyreqwest's read-ahead is the same error as on every terminal."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from httprail import HttpSettings, ProtocolError, RequestContext, RequestTimeoutError, set_context
from httprail.terminals import PyreqwestTerminal
from httprail.testing import ChaosServer, Fault, Reply

pytest.importorskip("pyreqwest")


def stalled(server: ChaosServer, *, read: float, stream: bool) -> httpx.Request:
    request = httpx.Request("GET", server.url_for("/stall"))
    request.extensions["timeout"] = httpx.Timeout(5.0, read=read).as_dict()
    set_context(request, RequestContext(stream=stream))
    return request


@pytest.mark.parametrize("stream", [False, True])
async def test_a_requests_own_read_timeout_ends_a_stalled_body(
    chaos_server: ChaosServer, stream: bool
) -> None:
    """``extensions["timeout"]`` read=0.15 (settings 5 s): a body that stops is a read timeout."""
    chaos_server.script("/stall", Reply.fail(Fault.HANG_BODY))
    terminal = PyreqwestTerminal(HttpSettings(timeout_read=5.0))
    try:
        outcome = await terminal.send(stalled(chaos_server, read=0.15, stream=stream))
        if stream:
            response = outcome.unwrap()
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()
            await response.aclose()
        else:
            error = outcome.failure()
            assert isinstance(error, RequestTimeoutError)
            assert error.phase == "read"
    finally:
        await terminal.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_requests_own_read_timeout_longer_than_the_settings_wins(
    chaos_server: ChaosServer, stream: bool
) -> None:
    """Settings 0.1 s read (+0.1 s connect), own read 5 s: a head 0.6 s late arrives (reqwest's
    own read timeout, fixed per client, used to end it at 0.2 s), on the terminal's second
    client; a request without its own timeout still has the settings' one."""
    chaos_server.script("/late", Reply.slow(0.6))
    settings = HttpSettings(timeout_read=0.1, timeout_connect=0.1)
    terminal = PyreqwestTerminal(settings)
    try:
        request = httpx.Request("GET", chaos_server.url_for("/late"))
        request.extensions["timeout"] = httpx.Timeout(5.0).as_dict()
        set_context(request, RequestContext(stream=stream))
        response = (await terminal.send(request)).unwrap()
        await response.aread()
        await response.aclose()
        assert response.status_code == 200
        plain = await terminal.send(httpx.Request("GET", chaos_server.url_for("/late")))
        error = plain.failure()
        assert isinstance(error, RequestTimeoutError)
        assert error.phase == "read"
        assert terminal._untimed is not None  # the second client, built for the longer one
    finally:
        await terminal.aclose()
    assert terminal._client is None  # both closed
    assert terminal._untimed is None
    kept, timed_out = (seen.connection_id for seen in chaos_server.requests_for("/late"))
    assert kept != timed_out  # one per client: their pools are their own
    # aclose() waits for pyreqwest to drop the clients and their connections: the server saw
    # the one kept alive end (the one that timed out ends when the server's late answer fails)
    assert chaos_server.closed_at(kept) is not None


async def test_no_idle_connection_is_kept_with_keepalive_expiry_0(
    chaos_server: ChaosServer,
) -> None:
    """``keepalive_expiry=0``: every request on a new connection."""
    settings = HttpSettings(keepalive_expiry=0)
    terminal = PyreqwestTerminal(settings)
    try:
        for _ in range(2):
            request = httpx.Request("GET", chaos_server.url_for("/ok"))
            assert (await terminal.send(request)).unwrap().status_code == 200
        assert len({seen.connection_id for seen in chaos_server.requests_for("/ok")}) == 2
    finally:
        await terminal.aclose()


async def test_a_body_cut_short_past_the_read_ahead_is_a_protocol_error() -> None:
    """A 200 kB body that ends after 100 kB (beyond pyreqwest's 64 KiB read-ahead, so it
    breaks while the terminal reads the rest): ``ProtocolError``, as on every terminal."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * 100_000)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    terminal = PyreqwestTerminal(HttpSettings())
    try:
        error = (await terminal.send(httpx.Request("GET", url))).failure()
        assert type(error) is ProtocolError
    finally:
        await terminal.aclose()
        server.close()
        await server.wait_closed()
