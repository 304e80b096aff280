"""HttpxTerminal: the seam where every backend exception becomes a typed Failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from httprail import (
    ClientStatusError,
    ConnectError,
    DecodeError,
    Failure,
    HttpSettings,
    InvalidRequestError,
    ProtocolError,
    ReadError,
    RequestContext,
    RequestError,
    RequestTimeoutError,
    ServerStatusError,
    Success,
    TransportError,
    WriteError,
    set_context,
)
from httprail.terminals import HttpxTerminal

URL = "https://api.test/x"


def raising(exc: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("exc", "kind", "phase"),
    [
        (httpx.ConnectTimeout("t"), RequestTimeoutError, "connect"),
        (httpx.ReadTimeout("t"), RequestTimeoutError, "read"),
        (httpx.WriteTimeout("t"), RequestTimeoutError, "write"),
        (httpx.PoolTimeout("t"), RequestTimeoutError, "pool"),
        (httpx.ConnectError("refused"), ConnectError, None),
        (httpx.ReadError("reset"), ReadError, None),
        (httpx.WriteError("broken pipe"), WriteError, None),
        (httpx.RemoteProtocolError("garbage"), ProtocolError, None),
        (httpx.LocalProtocolError("bad header"), InvalidRequestError, None),
        (httpx.UnsupportedProtocol("ftp"), InvalidRequestError, None),
        (httpx.DecodingError("bad gzip"), DecodeError, None),
        (httpx.TooManyRedirects("loop"), ProtocolError, None),
        (ConnectionRefusedError("os"), ConnectError, None),
        (ConnectionResetError("os"), ReadError, None),
        (RuntimeError("backend bug"), TransportError, None),
    ],
)
async def test_exceptions_map_to_the_tree(
    exc: Exception, kind: type[RequestError], phase: str | None
) -> None:
    terminal = HttpxTerminal(transport=raising(exc))
    request = httpx.Request("GET", URL)
    outcome = await terminal.send(request)
    error = outcome.failure()
    assert type(error) is kind
    assert error.request is request
    assert error.__cause__ is exc
    if phase is not None:
        assert isinstance(error, RequestTimeoutError)
        assert error.phase == phase
    await terminal.aclose()


async def test_success_body_is_read() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"a": 1}))
    terminal = HttpxTerminal(transport=transport)
    outcome = await terminal.send(httpx.Request("GET", URL))
    response = outcome.unwrap()
    assert response.is_closed
    assert response.json() == {"a": 1}
    await terminal.aclose()


@pytest.mark.parametrize(("status", "kind"), [(404, ClientStatusError), (503, ServerStatusError)])
async def test_error_statuses_are_failures_with_the_body(status: int, kind: type) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json={"error": "x"}))
    terminal = HttpxTerminal(transport=transport)
    error = (await terminal.send(httpx.Request("GET", URL))).failure()
    assert type(error) is kind
    assert error.status_code == status
    assert error.response.json() == {"error": "x"}
    await terminal.aclose()


async def test_error_body_is_capped() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(500, content=b"x" * 100_000))
    terminal = HttpxTerminal(transport=transport, max_error_body=1000)
    error = (await terminal.send(httpx.Request("GET", URL))).failure()
    assert isinstance(error, ServerStatusError)
    assert len(error.response.content) == 1000
    assert error.response.extensions["httprail.truncated"] is True
    await terminal.aclose()


async def test_raw_status_returns_error_statuses_as_success() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404))
    terminal = HttpxTerminal(transport=transport)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(raw_status=True))
    assert (await terminal.send(request)).unwrap().status_code == 404
    await terminal.aclose()


async def chunks() -> AsyncIterator[bytes]:
    yield b"a"
    yield b"bc"


async def test_stream_leaves_the_body_unread() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=chunks()))
    terminal = HttpxTerminal(transport=transport)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(stream=True))
    response = (await terminal.send(request)).unwrap()
    assert not response.is_stream_consumed
    assert await response.aread() == b"abc"
    await response.aclose()
    await terminal.aclose()


async def test_body_read_error_is_a_failure() -> None:
    class BrokenStream(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[override]
            yield b"partial"
            raise httpx.ReadError("connection lost")

    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=BrokenStream()))
    terminal = HttpxTerminal(transport=transport)
    outcome = await terminal.send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), ReadError)
    await terminal.aclose()


async def test_default_timeouts_come_from_settings() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200)

    settings = HttpSettings(timeout_connect=1, timeout_read=2, timeout_write=3, timeout_pool=4)
    terminal = HttpxTerminal(settings, transport=httpx.MockTransport(handler))
    await terminal.send(httpx.Request("GET", URL))
    assert seen == [{"connect": 1, "read": 2, "write": 3, "pool": 4}]
    await terminal.aclose()


async def test_pool_limits_and_http2_come_from_settings() -> None:
    settings = HttpSettings(max_connections=7, max_keepalive=3, http2=False)
    terminal = HttpxTerminal(settings)
    client = terminal.client
    assert client is terminal.client  # created once, lazily
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert (pool._max_connections, pool._max_keepalive_connections) == (7, 3)
    assert pool._http2 is False
    await terminal.aclose()


async def test_send_after_close_is_a_failure() -> None:
    terminal = HttpxTerminal(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    await terminal.aclose()
    outcome = await terminal.send(httpx.Request("GET", URL))
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), InvalidRequestError)


async def test_a_borrowed_client_is_not_closed() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    terminal = HttpxTerminal(client=client)
    assert isinstance(await terminal.send(httpx.Request("GET", URL)), Success)
    await terminal.aclose()
    assert not client.is_closed
    await client.aclose()


async def test_reclaiming_orphans_is_a_no_op_without_httpcores_pool() -> None:
    from httprail.terminals._httpx import reclaim_orphaned_connections

    mocked = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(204)))
    async with mocked:
        assert await reclaim_orphaned_connections(mocked) == 0
    async with httpx.AsyncClient() as pooled:  # a fresh pool: nothing to reclaim
        assert await reclaim_orphaned_connections(pooled) == 0
