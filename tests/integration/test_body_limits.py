"""The response size limit (``max_body_bytes``) and stream backpressure, on every terminal.

A raw asyncio server on 127.0.0.1 plays the bodies (plain, chunked, gzip and deflate bombs,
endless); each test runs against the httpx, aiohttp and curl terminals with a 64 KiB limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from httprail import (
    AsyncClient,
    CircuitBreakerOpenError,
    DecodeError,
    Failure,
    HttpSettings,
    InvalidRequestError,
    RequestContext,
    ResponseTooLargeError,
    Success,
    set_context,
)
from httprail._pipeline import TerminalPlugin
from httprail.terminals import map_exception

from ._terminals import KINDS, build

CAP = 64 * 1024
PIECE = 16 * 1024
FAST = {"timeout_connect": 2.0, "timeout_read": 2.0, "timeout_pool": 2.0}


class BodyServer:
    """Answers ``GET /<kind>/<size>`` with such a body; counts what ``/endless`` wrote."""

    def __init__(self) -> None:
        self.requests = 0
        self.endless_written = 0
        self.endless_stalled = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.url = ""

    async def __aenter__(self) -> BodyServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            _, kind, size = head.split(b" ", 2)[1].decode().split("/")
            await self._answer(writer, kind, int(size or 0))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, kind: str, size: int) -> None:
        ok = b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
        if kind == "endless":
            writer.write(ok + b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n" % PIECE + b"e" * PIECE + b"\r\n"
            while True:
                writer.write(chunk)
                self.endless_written += PIECE
                try:
                    await asyncio.wait_for(writer.drain(), 0.3)
                except TimeoutError:
                    self.endless_stalled.set()  # the client stopped reading: backpressure
                    await writer.drain()
        if kind == "chunked":
            writer.write(ok + b"Transfer-Encoding: chunked\r\n\r\n")
            left = size
            while left > 0:
                piece = min(left, PIECE)
                writer.write(b"%x\r\n" % piece + b"c" * piece + b"\r\n")
                left -= piece
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return
        body, encoding = _body(kind, size)
        extra = b"Content-Encoding: " + encoding + b"\r\n" if encoding else b""
        writer.write(ok + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()


@functools.cache
def _body(kind: str, size: int) -> tuple[bytes, bytes]:
    """The body of ``size`` bytes (once decoded) sent for ``kind``, and its content encoding."""
    if kind == "plain":
        return b"p" * size, b""
    zeros = b"\0" * size
    if kind == "gzip":
        return gzip.compress(zeros), b"gzip"
    if kind == "deflate":
        return zlib.compress(zeros), b"deflate"
    return _raw_deflate(zeros), b"deflate"


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.fixture
async def server() -> AsyncIterator[BodyServer]:
    async with BodyServer() as running:
        yield running


@pytest.fixture(params=KINDS)
async def terminal_for(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., TerminalPlugin]]:
    """Build terminals of the parametrised kind (64 KiB limit unless told); closed afterwards."""
    built: list[TerminalPlugin] = []

    def factory(**settings: Any) -> TerminalPlugin:
        terminal = build(request.param, HttpSettings(**{**FAST, "max_body_bytes": CAP, **settings}))
        built.append(terminal)
        return terminal

    yield factory
    for terminal in built:
        await terminal.aclose()


def get(url: str, *, stream: bool = False, **extensions: Any) -> httpx.Request:
    request = httpx.Request("GET", url, extensions=extensions)
    set_context(request, RequestContext(stream=stream))
    return request


async def drain(response: httpx.Response, sizes: list[int]) -> None:
    """Read ``response``'s decoded body, noting the size of each chunk in ``sizes``."""
    async for chunk in response.aiter_bytes():
        sizes.append(len(chunk))


def too_large(outcome: Any, limit: int = CAP) -> ResponseTooLargeError:
    assert type(outcome) is Failure, outcome
    error = outcome.failure()
    assert isinstance(error, ResponseTooLargeError), error
    assert isinstance(error, DecodeError)
    assert error.limit == limit
    assert f"{limit:,} bytes" in str(error)
    assert "HTTP_MAX_BODY_BYTES" in str(error)
    return error


@pytest.mark.parametrize("kind", ["plain", "chunked", "gzip", "deflate", "rawdeflate"])
async def test_a_body_within_the_limit_arrives_whole_and_decoded(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin], kind: str
) -> None:
    outcome = await terminal_for().send(get(f"{server.url}/{kind}/{CAP}"))
    assert type(outcome) is Success, outcome
    assert len(outcome.unwrap().content) == CAP


@pytest.mark.parametrize("kind", ["plain", "chunked"])
async def test_a_body_over_the_limit_is_a_response_too_large_failure(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin], kind: str
) -> None:
    too_large(await terminal_for().send(get(f"{server.url}/{kind}/{CAP + 1}")))


@pytest.mark.parametrize("kind", ["gzip", "deflate", "rawdeflate"])
async def test_a_compressed_body_is_counted_decoded_so_a_bomb_stops_at_the_limit(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin], kind: str
) -> None:
    # 50 MB of zeros compress to ~50 KB: under the limit on the wire, far over it decoded.
    too_large(await terminal_for().send(get(f"{server.url}/{kind}/50000000")))


async def test_an_endless_body_fails_at_the_limit_instead_of_reading_forever(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin]
) -> None:
    started = time.perf_counter()
    too_large(await terminal_for().send(get(f"{server.url}/endless/0")))
    assert time.perf_counter() - started < 2.0


async def test_a_declared_length_over_the_limit_fails_a_stream_before_it_is_handed_over(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin]
) -> None:
    too_large(await terminal_for().send(get(f"{server.url}/plain/{CAP + 1}", stream=True)))


@pytest.mark.parametrize(("kind", "size"), [("chunked", CAP * 4), ("gzip", 50_000_000)])
async def test_reading_a_stream_past_the_limit_raises_an_httpx_decoding_error(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin], kind: str, size: int
) -> None:
    request = get(f"{server.url}/{kind}/{size}", stream=True)
    response = (await terminal_for().send(request)).unwrap()
    received: list[int] = []
    with pytest.raises(httpx.DecodingError) as raised:
        await drain(response, received)
    await response.aclose()
    # the bytes within the limit, then the error, however the backend cuts the body (aiohttp
    # hands over bigger chunks, and the one crossing the limit was lost whole)
    assert sum(received) == CAP
    too_large(Failure(map_exception(raised.value, request)))


async def test_a_stream_within_the_limit_is_read_to_its_end(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin]
) -> None:
    for kind in ("chunked", "gzip"):
        response = await terminal_for().send(get(f"{server.url}/{kind}/{CAP}", stream=True))
        body = b"".join([chunk async for chunk in response.unwrap().aiter_bytes()])
        await response.unwrap().aclose()
        assert len(body) == CAP


@pytest.mark.parametrize(
    ("limit", "size", "fits"),
    [(1024, 2048, False), (None, CAP * 4, True), (CAP * 8, CAP * 4, True)],
    ids=["lowered", "lifted", "raised"],
)
async def test_the_request_extension_overrides_the_limit_for_one_request(
    server: BodyServer,
    terminal_for: Callable[..., TerminalPlugin],
    limit: int | None,
    size: int,
    fits: bool,
) -> None:
    terminal = terminal_for()
    for kind in ("plain", "gzip"):
        request = get(f"{server.url}/{kind}/{size}", **{"httprail.max_body_bytes": limit})
        outcome = await terminal.send(request)
        if fits:
            assert len(outcome.unwrap().content) == size
        else:
            too_large(outcome, 1024)


async def test_a_setting_of_none_lifts_the_limit(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin]
) -> None:
    terminal = terminal_for(max_body_bytes=None)
    for kind in ("plain", "chunked", "gzip"):
        outcome = await terminal.send(get(f"{server.url}/{kind}/{CAP * 4}"))
        assert len(outcome.unwrap().content) == CAP * 4
    response = (await terminal.send(get(f"{server.url}/chunked/{CAP * 4}", stream=True))).unwrap()
    assert len(b"".join([chunk async for chunk in response.aiter_bytes()])) == CAP * 4
    await response.aclose()


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True])
async def test_an_invalid_extension_value_is_an_invalid_request_naming_it(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin], value: object
) -> None:
    outcome = await terminal_for().send(
        get(f"{server.url}/plain/1", **{"httprail.max_body_bytes": value})
    )
    error = outcome.failure()
    assert isinstance(error, InvalidRequestError)
    assert "httprail.max_body_bytes" in str(error)
    assert server.requests == 0


async def test_a_body_too_large_is_not_retried_and_does_not_open_the_breaker(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin]
) -> None:
    settings = HttpSettings(max_body_bytes=CAP, circuit_breaker_threshold=2, backoff_base=0.01)
    async with AsyncClient(server.url, terminal=terminal_for(), settings=settings) as client:
        for _ in range(4):
            outcome = await client.get(f"/plain/{CAP + 1}")
            assert not isinstance(outcome.failure(), CircuitBreakerOpenError)
            too_large(outcome)
        assert server.requests == 4  # one request per call: no retry, never short-circuited
        assert len((await client.get("/plain/10")).unwrap().content) == 10
        lifted = await client.get(f"/plain/{CAP * 2}", extensions={"httprail.max_body_bytes": None})
        assert len(lifted.unwrap().content) == CAP * 2


async def test_a_stream_the_caller_does_not_read_is_not_buffered_by_the_terminal(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin]
) -> None:
    terminal = terminal_for(max_body_bytes=None)
    response = (await terminal.send(get(f"{server.url}/endless/0", stream=True))).unwrap()
    stream = response.aiter_raw()
    await anext(stream)  # the body started; now the caller stops reading
    await asyncio.wait_for(server.endless_stalled.wait(), 5)
    written = server.endless_written
    await asyncio.sleep(0.5)
    # The server is blocked: what it wrote sits in socket buffers and a bounded terminal
    # buffer (without backpressure a terminal reads on at ~400 MB/s while nobody reads).
    assert server.endless_written - written <= 4 * 1024 * 1024
    assert server.endless_written <= 64 * 1024 * 1024
    written, resumed = server.endless_written, 0
    while server.endless_written == written:  # reading again makes the server go on
        resumed += len(await anext(stream))
        assert resumed <= 64 * 1024 * 1024
    await stream.aclose()
    await response.aclose()


async def test_the_client_call_option_sets_the_limit_of_one_call_and_of_a_stream(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin]
) -> None:
    async with AsyncClient(server.url, plugins=[], terminal=terminal_for()) as client:
        lifted = await client.get(f"/gzip/{CAP * 2}", max_body_bytes=None)
        assert len(lifted.unwrap().content) == CAP * 2
        too_large(await client.get("/plain/2000", max_body_bytes=1000), 1000)
        async with client.stream("GET", "/chunked/2000", max_body_bytes=1000) as outcome:
            with pytest.raises(httpx.DecodingError, match="1,000 bytes"):
                await drain(outcome.unwrap(), [])
        invalid = await client.get("/plain/1", max_body_bytes=0)
        assert isinstance(invalid.failure(), InvalidRequestError)


@pytest.mark.parametrize("own_timeout", [False, True])
async def test_a_large_declared_length_fails_without_reading_the_body(
    server: BodyServer, terminal_for: Callable[..., TerminalPlugin], own_timeout: bool
) -> None:
    request = get(f"{server.url}/plain/{64 * 1024 * 1024}")
    if own_timeout:  # the backend keeps the read timeout itself
        request.extensions["timeout"] = httpx.Timeout(5.0).as_dict()
    started = time.perf_counter()
    too_large(await terminal_for().send(request))
    assert time.perf_counter() - started < 1.0
