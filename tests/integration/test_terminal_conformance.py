"""Every terminal gives the same outcome for the same fault: one suite, run against each backend.

The chaos server (or, for faults it cannot script, a few lines of raw asyncio server) plays the
fault; each test is parametrised over the httpx, aiohttp and curl terminals and asserts the
error type and timeout phase :class:`HttpxTerminal` gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import select
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from httprail import (
    AsyncClient,
    ClientStatusError,
    ConnectError,
    HttpSettings,
    InvalidRequestError,
    ProtocolError,
    ReadError,
    RequestContext,
    RequestTimeoutError,
    ServerStatusError,
    Success,
    TransportError,
    set_context,
)
from httprail._pipeline import TerminalPlugin
from httprail.terminals import map_exception
from httprail.testing import ChaosServer, Fault, Reply

from ._terminals import build

FAST = {"timeout_connect": 0.3, "timeout_read": 0.3, "timeout_pool": 0.3}

TerminalFactory = Callable[..., TerminalPlugin]


@pytest.fixture
async def make_terminal(kind: str) -> AsyncIterator[TerminalFactory]:
    """Build terminals of the parametrised kind (short timeouts); all closed after the test."""
    built: list[TerminalPlugin] = []

    def factory(*, options: dict[str, Any] | None = None, **settings: Any) -> TerminalPlugin:
        terminal = build(kind, HttpSettings(**{**FAST, **settings}), **(options or {}))
        built.append(terminal)
        return terminal

    yield factory
    for terminal in built:
        await terminal.aclose()


@pytest.fixture
def adds_default_headers(kind: str, request: pytest.FixtureRequest) -> None:
    """A known difference: reqwest adds ``Accept: */*`` and its own ``User-Agent`` to a request
    that has neither, after every hook pyreqwest offers (docs/terminals.md, PyreqwestTerminal)."""
    if kind == "reqwest":
        reason = "reqwest adds Accept and User-Agent to a request that lacks them"
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))


def get(url: str, *, stream: bool = False, raw_status: bool = False) -> httpx.Request:
    request = httpx.Request("GET", url)
    set_context(request, RequestContext(stream=stream, raw_status=raw_status))
    return request


async def wait_for_count(server: ChaosServer, path: str, count: int) -> None:
    deadline = time.monotonic() + 5
    while server.count(path) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


# -- connection-level faults ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind_of_error"),
    [
        (Fault.RESET, ReadError),  # RST before any answer
        (Fault.CLOSE, ProtocolError),  # closed without answering
        (Fault.GARBAGE, ProtocolError),  # not HTTP
        (Fault.TRUNCATE, ProtocolError),  # body shorter than its Content-Length
    ],
)
async def test_broken_connections_give_the_same_error(
    chaos_server: ChaosServer,
    make_terminal: TerminalFactory,
    fault: Fault,
    kind_of_error: type[TransportError],
) -> None:
    chaos_server.script("/broken", Reply.fail(fault))
    outcome = await make_terminal().send(get(chaos_server.url_for("/broken")))
    error = outcome.failure()
    assert type(error) is kind_of_error
    assert error.__cause__ is not None


async def test_connection_refused_is_a_connect_error(make_terminal: TerminalFactory) -> None:
    with ChaosServer() as server:
        url = server.url
    outcome = await make_terminal().send(get(url))
    assert type(outcome.failure()) is ConnectError


@contextlib.contextmanager
def full_backlog() -> Iterator[socket.socket]:
    """A listener whose backlog is full, so a connect there hangs until it is accepted from."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    try:
        yield listener
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listen backlog is full, so a connect there hangs until it times out."""
    with full_backlog() as listener:
        port: int = listener.getsockname()[1]
        yield port


async def test_connect_timeout_has_the_connect_phase(
    make_terminal: TerminalFactory, unanswered_port: int
) -> None:
    terminal = make_terminal(timeout_connect=0.15, timeout_read=0.1)
    start = time.monotonic()
    outcome = await terminal.send(get(f"http://127.0.0.1:{unanswered_port}/"))
    elapsed = time.monotonic() - start
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "connect"
    assert 0.14 <= elapsed < 0.5


async def test_a_slow_connect_does_not_count_against_the_read_timeout(
    make_terminal: TerminalFactory,
) -> None:
    # The backlog is full, so the client's SYN is dropped; 0.2 s later the listener starts
    # accepting, and the connection is made when the client resends its SYN (~1 s later). The
    # answer then comes at once: a read timeout counted from before the connect would expire.
    def serve(listener: socket.socket) -> None:
        time.sleep(0.2)
        accepted: list[socket.socket] = []
        deadline = time.monotonic() + 5
        try:
            while time.monotonic() < deadline:  # the fillers first, then the client
                readable, _, _ = select.select([listener, *accepted], [], [], 0.05)
                for ready in readable:
                    if ready is listener:
                        accepted.append(listener.accept()[0])
                    elif ready.recv(65536).startswith(b"GET"):
                        ready.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        return
        finally:
            for conn in accepted:
                conn.close()

    with full_backlog() as listener:
        server = threading.Thread(target=serve, args=(listener,), daemon=True)
        server.start()
        terminal = make_terminal(timeout_connect=3.0, timeout_read=0.4)
        start = time.monotonic()
        outcome = await terminal.send(get(f"http://127.0.0.1:{listener.getsockname()[1]}/"))
        elapsed = time.monotonic() - start
        server.join(5)
    assert outcome.unwrap().content == b"ok"
    assert elapsed > 0.4  # the connect alone took longer than the read timeout


@pytest.mark.parametrize("reply", [Reply.fail(Fault.HANG), Reply.slow(2.0)])
async def test_slow_headers_past_the_read_timeout(
    chaos_server: ChaosServer, make_terminal: TerminalFactory, reply: Reply
) -> None:
    chaos_server.script("/slow", reply)
    start = time.monotonic()
    outcome = await make_terminal(timeout_read=0.15).send(get(chaos_server.url_for("/slow")))
    elapsed = time.monotonic() - start
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "read"
    assert 0.14 <= elapsed < 0.6


async def test_a_body_that_stops_is_a_read_timeout(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/stall", Reply.fail(Fault.HANG_BODY))
    outcome = await make_terminal(timeout_read=0.15).send(get(chaos_server.url_for("/stall")))
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "read"


@pytest.mark.parametrize("stream", [False, True])
async def test_the_read_timeout_is_between_reads_not_for_the_whole_body(
    chaos_server: ChaosServer, make_terminal: TerminalFactory, stream: bool
) -> None:
    # Six chunks 0.1 s apart: 0.5 s in all, each within the 0.3 s read timeout.
    chaos_server.script("/trickle", Reply.sse([str(n) for n in range(6)], event_delay=0.1))
    terminal = make_terminal(timeout_read=0.3)
    outcome = await terminal.send(get(chaos_server.url_for("/trickle"), stream=stream))
    response = outcome.unwrap()
    body = (
        b"".join([chunk async for chunk in response.aiter_bytes()]) if stream else response.content
    )
    assert body.count(b"data:") == 6
    await response.aclose()


async def test_an_upload_answered_too_late_is_a_read_timeout(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/slow-upload", Reply.slow(2.0))
    request = httpx.Request("POST", chaos_server.url_for("/slow-upload"), content=b"x" * 1000)
    start = time.monotonic()
    outcome = await make_terminal(timeout_read=0.15).send(request)
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "read"
    assert 0.14 <= time.monotonic() - start < 0.6


async def test_the_request_timeout_extension_wins_over_the_settings(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/slow", Reply.slow(2.0))
    request = get(chaos_server.url_for("/slow"))
    request.extensions["timeout"] = httpx.Timeout(5.0, read=0.1).as_dict()
    start = time.monotonic()
    outcome = await make_terminal(timeout_read=5.0).send(request)
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "read"
    assert time.monotonic() - start < 1.0


async def test_pool_exhaustion_is_a_pool_timeout(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/hang", Reply.fail(Fault.HANG))
    terminal = make_terminal(max_connections=1, max_keepalive=1, timeout_pool=0.1, timeout_read=5)
    holder = asyncio.create_task(terminal.send(get(chaos_server.url_for("/hang"))))
    await wait_for_count(chaos_server, "/hang", 1)
    start = time.monotonic()
    outcome = await terminal.send(get(chaos_server.url_for("/ok")))
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "pool"
    assert 0.09 <= time.monotonic() - start < 0.5
    assert chaos_server.count("/ok") == 0
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder


# -- faults the chaos server cannot script: a reset in the middle of the body ---------------


@contextlib.asynccontextmanager
async def _serving(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
) -> AsyncIterator[str]:
    """``serve`` answering every connection on a port of 127.0.0.1; its URL."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def resetting_server() -> AsyncIterator[str]:
    """Answers the head and 10 of 1,000 promised bytes, then aborts with a TCP RST."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with _serving(serve) as url:
        yield url


async def test_a_reset_mid_body_is_a_read_error(
    make_terminal: TerminalFactory, resetting_server: str
) -> None:
    outcome = await make_terminal().send(get(resetting_server))
    assert type(outcome.failure()) is ReadError


async def test_a_reset_mid_stream_raises_a_read_error_while_iterating(
    make_terminal: TerminalFactory, resetting_server: str
) -> None:
    response = (await make_terminal().send(get(resetting_server, stream=True))).unwrap()
    received: list[bytes] = []

    async def read() -> None:
        async for chunk in response.aiter_bytes():
            received.append(chunk)

    with pytest.raises(httpx.ReadError) as caught:
        await read()
    await response.aclose()
    assert b"".join(received) == b"0123456789"
    assert type(map_exception(caught.value, response.request)) is ReadError


@pytest.fixture
async def cut_stream_server() -> AsyncIterator[str]:
    """A chunked event stream: one event, a second one 50 ms later, then the connection ends
    without the last chunk."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n8\r\ndata: a\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"8\r\ndata: b\n\r\n")
        await writer.drain()
        writer.close()

    async with _serving(serve) as url:
        yield url


async def test_a_slow_reader_of_a_cut_stream_gets_what_came_before_the_cut(
    make_terminal: TerminalFactory, cut_stream_server: str
) -> None:
    """The caller reads the first event, then takes 0.3 s: meanwhile the second event and the
    end of the connection arrive. The second event is the caller's, then the error (aiohttp
    raised the error first and the event was lost: a proxy's last event, a model's last words)."""
    response = (await make_terminal().send(get(cut_stream_server, stream=True))).unwrap()
    received: list[bytes] = []

    async def read() -> None:
        async for chunk in response.aiter_bytes():
            received.append(chunk)
            await asyncio.sleep(0.3)

    with pytest.raises(httpx.HTTPError) as caught:
        await read()
    await response.aclose()
    assert b"".join(received) == b"data: a\ndata: b\n"
    assert type(map_exception(caught.value, response.request)) is ProtocolError


@pytest.fixture
async def slow_body_server() -> AsyncIterator[str]:
    """A chunked body of 100 x 64 KiB, a piece every 10 ms."""
    piece = b"x" * 65536

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            for _ in range(100):
                writer.write(b"10000\r\n" + piece + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except OSError:
            pass  # the client went away
        finally:
            writer.close()

    async with _serving(serve) as url:
        yield url


async def test_a_terminal_closed_under_a_stream_never_ends_it_early_and_cleanly(
    make_terminal: TerminalFactory, slow_body_server: str
) -> None:
    """The terminal is closed while a body is arriving: the stream ends with an httpx error,
    or (reqwest, which keeps a started response going) with the whole body; never cleanly
    with bytes missing (curl_cffi ended its transfers as completed: a cut body looked whole)."""
    terminal = make_terminal()
    response = (await terminal.send(get(slow_body_server, stream=True))).unwrap()
    chunks = response.aiter_bytes()
    received = len(await anext(chunks))
    await terminal.aclose()
    try:
        async with asyncio.timeout(10):
            async for chunk in chunks:
                received += len(chunk)
    except httpx.HTTPError:
        assert received < 100 * 65536
    else:
        assert received == 100 * 65536
    finally:
        await response.aclose()


async def test_a_terminal_closed_under_a_whole_read_ends_it_at_once(
    make_terminal: TerminalFactory, slow_body_server: str
) -> None:
    """A body read whole when the terminal is closed: a ``ReadError`` at once (aiohttp's read
    waited on the closed connection until the read timeout, 30 s here, then said "read
    timeout"; curl's was ``Success`` with a fifth of the body), or the whole body (reqwest)."""
    terminal = make_terminal(timeout_read=30)
    sending = asyncio.create_task(terminal.send(get(slow_body_server)))
    await asyncio.sleep(0.2)
    await terminal.aclose()
    async with asyncio.timeout(10):  # a hang guard far below the read timeout
        outcome = await sending
    if isinstance(outcome, Success):
        assert len(outcome.unwrap().content) == 100 * 65536
    else:
        assert type(outcome.failure()) is ReadError, outcome


# -- responses ------------------------------------------------------------------------------


async def test_error_statuses_are_status_errors_with_the_body(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/missing", Reply.json({"detail": "nope"}, status=404))
    chaos_server.script("/down", Reply.status(503, retry_after="1", body=b"busy"))
    terminal = make_terminal()
    missing = (await terminal.send(get(chaos_server.url_for("/missing")))).failure()
    assert isinstance(missing, ClientStatusError)
    assert missing.status_code == 404
    assert missing.response.json() == {"detail": "nope"}
    down = (await terminal.send(get(chaos_server.url_for("/down")))).failure()
    assert isinstance(down, ServerStatusError)
    assert (down.response.text, down.response.headers["retry-after"]) == ("busy", "1")
    assert down.response.reason_phrase == "Service Unavailable"
    assert down.response.elapsed.total_seconds() > 0  # as httpx sets it (it raised before)


async def test_raw_status_returns_the_response(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/down", Reply.status(503, body=b"busy"))
    outcome = await make_terminal().send(get(chaos_server.url_for("/down"), raw_status=True))
    response = outcome.unwrap()
    assert (response.status_code, response.content) == (503, b"busy")


async def test_an_error_body_is_capped(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/big-error", Reply.status(500, body=b"x" * 100_000))
    terminal = make_terminal(options={"max_error_body": 1000})
    error = (await terminal.send(get(chaos_server.url_for("/big-error")))).failure()
    assert isinstance(error, ServerStatusError)
    assert len(error.response.content) == 1000
    assert error.response.extensions["httprail.truncated"] is True


async def test_redirects_are_returned_not_followed(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/old", Reply.status(301, headers={"Location": "/new"}))
    response = (await make_terminal().send(get(chaos_server.url_for("/old")))).unwrap()
    assert (response.status_code, response.headers["location"]) == (301, "/new")
    assert chaos_server.count("/new") == 0


async def test_a_big_body_arrives_whole(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    body = bytes(range(256)) * 20_000  # 5 MB
    chaos_server.script("/big", Reply(body=body))
    response = (await make_terminal().send(get(chaos_server.url_for("/big")))).unwrap()
    assert response.content == body
    assert response.elapsed.total_seconds() > 0


async def test_repeated_headers_are_kept_in_order(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    headers = (("set-cookie", "a=1"), ("x-one", "1"), ("set-cookie", "b=2"))
    chaos_server.script("/h", Reply(headers=headers, body=b"ok"))
    response = (await make_terminal().send(get(chaos_server.url_for("/h")))).unwrap()
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.headers["x-one"] == "1"
    assert response.extensions["http_version"] == b"HTTP/1.1"


async def test_request_headers_arrive_as_sent_request_after_request(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    """Repeated request headers keep their order; each request sends its own set."""
    terminal = make_terminal()
    url = chaos_server.url_for("/seen")
    first = httpx.Request("GET", url, headers=[("X-A", "1"), ("x-a", "2"), ("X-Id", "one")])
    second = httpx.Request("GET", url, headers=[("X-A", "3"), ("X-Id", "two")])
    for request in (first, second, first):
        set_context(request, RequestContext())
        assert isinstance(await terminal.send(request), Success)
    seen = [
        [(k, v) for k, v in r.headers if k in ("x-a", "x-id")]
        for r in chaos_server.requests_for("/seen")
    ]
    one = [("x-a", "1"), ("x-a", "2"), ("x-id", "one")]
    assert seen == [one, [("x-a", "3"), ("x-id", "two")], one]


async def test_head_has_headers_and_no_body(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/h", Reply(body=b"twelve bytes"))
    terminal = make_terminal()
    response = (await terminal.send(httpx.Request("HEAD", chaos_server.url_for("/h")))).unwrap()
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["content-length"] == "12"
    again = (await terminal.send(get(chaos_server.url_for("/h")))).unwrap()
    assert again.content == b"twelve bytes"  # the connection is still in a sane state


async def test_content_encodings_are_undone_as_httpx_does(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    body = gzip.compress(b'{"zipped": true}')
    chaos_server.script("/gz", Reply(headers=(("content-encoding", "gzip"),), body=body))
    response = (await make_terminal().send(get(chaos_server.url_for("/gz")))).unwrap()
    assert response.json() == {"zipped": True}
    assert response.headers["content-encoding"] == "gzip"


async def test_a_read_response_is_in_the_state_httpx_leaves_it(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    """Read, closed, consumed, counted: the same attributes httpx's own ``read()`` leaves."""
    body = '{"name": "zoë"}'.encode()
    chaos_server.script("/r", Reply(headers=(("content-type", "application/json"),), body=body))
    response = (await make_terminal().send(get(chaos_server.url_for("/r")))).unwrap()
    assert (response.content, response.text, response.json()) == (
        body,
        '{"name": "zoë"}',
        {"name": "zoë"},
    )
    assert (response.is_closed, response.is_stream_consumed) == (True, True)
    assert response.num_bytes_downloaded == len(body)
    assert response.read() == body
    assert await response.aread() == body
    assert list(response.iter_bytes()) == [body]  # a read body can be iterated again, as in httpx
    assert response.elapsed.total_seconds() > 0


async def test_a_bad_encoding_is_a_decode_error(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/gz", Reply(headers=(("content-encoding", "gzip"),), body=b"not gzip"))
    error = (await make_terminal().send(get(chaos_server.url_for("/gz")))).failure()
    assert type(error).__name__ == "DecodeError"


# -- streaming --------------------------------------------------------------------------------


async def test_a_streamed_body_is_read_by_the_caller(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/events", Reply.sse(["one", "two", "three"], event_delay=0.01))
    terminal = make_terminal()
    response = (await terminal.send(get(chaos_server.url_for("/events"), stream=True))).unwrap()
    assert not response.is_closed
    text = "".join([chunk async for chunk in response.aiter_text()])
    await response.aclose()
    assert text == "data: one\n\ndata: two\n\ndata: three\n\n"
    assert response.elapsed.total_seconds() > 0


async def test_a_broken_stream_raises_a_protocol_error_while_iterating(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/events", Reply.sse(["one", "two", "three"], drop_after=2))
    terminal = make_terminal()
    response = (await terminal.send(get(chaos_server.url_for("/events"), stream=True))).unwrap()
    with pytest.raises(httpx.HTTPError) as caught:
        async for _ in response.aiter_bytes():
            pass
    await response.aclose()
    assert type(map_exception(caught.value, response.request)) is ProtocolError


async def test_a_stalled_stream_is_a_read_timeout_while_iterating(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/events", Reply.sse(["one", "two"], event_delay=2.0))
    terminal = make_terminal(timeout_read=0.15)
    response = (await terminal.send(get(chaos_server.url_for("/events"), stream=True))).unwrap()
    with pytest.raises(httpx.ReadTimeout):
        async for _ in response.aiter_bytes():
            pass
    await response.aclose()


async def test_a_stream_holds_its_slot_until_closed(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/events", Reply.sse(["one"]))
    terminal = make_terminal(max_connections=1, max_keepalive=1, timeout_pool=0.05)
    response = (await terminal.send(get(chaos_server.url_for("/events"), stream=True))).unwrap()
    blocked = (await terminal.send(get(chaos_server.url_for("/ok")))).failure()
    assert isinstance(blocked, RequestTimeoutError)
    assert blocked.phase == "pool"
    await response.aclose()  # closed unread: the slot comes back
    assert isinstance(await terminal.send(get(chaos_server.url_for("/ok"))), Success)


# -- requests ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("adds_default_headers")
async def test_request_bodies_headers_and_query_arrive_as_sent(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    terminal = make_terminal()
    request = httpx.Request(
        "POST",
        chaos_server.url_for("/echo"),
        params={"q": "a b", "n": "1"},
        headers=[("x-multi", "1"), ("x-multi", "2"), ("user-agent", "conformance")],
        json={"hello": ["world"]},
    )
    assert isinstance(await terminal.send(request), Success)
    seen = chaos_server.requests_for("/echo")[-1]
    assert (seen.method, seen.query, seen.body) == ("POST", "q=a+b&n=1", b'{"hello":["world"]}')
    assert seen.header("content-type") == "application/json"
    assert seen.header("user-agent") == "conformance"
    assert [v for k, v in seen.headers if k == "x-multi"] == ["1", "2"]
    assert seen.header("accept") is None  # no header the request did not have


# Headers a terminal may add because framing needs them; nothing else the request lacks.
_FRAMING = {"host", "content-length", "transfer-encoding"}


@pytest.mark.parametrize(
    ("method", "body", "headers"),
    [
        ("GET", None, []),
        ("GET", None, [("accept", "text/plain")]),
        ("POST", None, []),
        ("PUT", b"payload", []),
        ("PATCH", b"payload", [("user-agent", "mine"), ("accept-encoding", "identity")]),
        ("DELETE", b"payload", [("content-type", "text/plain")]),
        ("PURGE", None, []),
    ],
)
@pytest.mark.usefixtures("adds_default_headers")
async def test_no_header_the_request_lacks_is_added(
    chaos_server: ChaosServer,
    make_terminal: TerminalFactory,
    method: str,
    body: bytes | None,
    headers: list[tuple[str, str]],
) -> None:
    terminal = make_terminal()
    request = httpx.Request(method, chaos_server.url_for("/bare"), content=body)
    framing = [(k, v) for k, v in request.headers.multi_items() if k in _FRAMING]
    request.headers = httpx.Headers([*framing, *headers])  # none of httpx's defaults either
    for _ in range(2):  # the second time from the terminal's caches
        assert isinstance(await terminal.send(request), Success)
    for seen in chaos_server.requests_for("/bare"):
        names = {k.lower() for k, _ in seen.headers}
        assert names - _FRAMING == {k for k, _ in headers}, (method, seen.headers)
        assert seen.body == (body or b"")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "Basic dXNlcjpwIHc="),  # user:p w
        ({"Authorization": "Bearer explicit"}, "Bearer explicit"),
    ],
)
async def test_url_credentials_become_basic_auth_unless_a_header_says_otherwise(
    chaos_server: ChaosServer,
    make_terminal: TerminalFactory,
    headers: dict[str, str],
    expected: str,
) -> None:
    """Userinfo never goes on the wire in the URL; it becomes ``Authorization: Basic`` unless
    the request has an Authorization header, which wins (httpx let the URL win, curl the
    header, aiohttp refused the pair)."""
    terminal = make_terminal()
    url = chaos_server.url_for("/who").replace("http://", "http://user:p%20w@")
    for _ in range(2):  # the second time from the terminal's caches
        request = httpx.Request("GET", url, headers=headers)
        assert isinstance(await terminal.send(request), Success)
    seen_twice = chaos_server.requests_for("/who")
    assert len(seen_twice) == 2
    for seen in seen_twice:
        assert seen.header("authorization") == expected
        assert seen.path == "/who"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_other_methods_carry_their_body(
    chaos_server: ChaosServer, make_terminal: TerminalFactory, method: str
) -> None:
    request = httpx.Request(method, chaos_server.url_for("/m"), content=b"payload")
    assert isinstance(await make_terminal().send(request), Success)
    seen = chaos_server.requests_for("/m")[-1]
    assert (seen.method, seen.body) == (method, b"payload")


async def test_big_and_streamed_uploads_arrive_whole(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    terminal = make_terminal()
    big = b"u" * 3_000_000
    big_request = httpx.Request("POST", chaos_server.url_for("/up"), content=big)
    assert isinstance(await terminal.send(big_request), Success)

    async def parts() -> AsyncIterator[bytes]:
        for index in range(5):
            yield f"part{index};".encode()

    streamed = httpx.Request("POST", chaos_server.url_for("/up"), content=parts())
    assert isinstance(await terminal.send(streamed), Success)
    bodies = [r.body for r in chaos_server.requests_for("/up")]
    assert bodies == [big, b"part0;part1;part2;part3;part4;"]


async def test_a_streamed_upload_whose_iterator_raises_is_the_callers_error(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    """The caller's body breaks after a part: ``InvalidRequestError`` caused by what it raised,
    whatever the backend calls it (aiohttp a connection error, reqwest a transport error), so
    it is not retried nor counted against the upstream; the terminal goes on."""
    broken = ValueError("the caller's generator broke")

    async def parts() -> AsyncIterator[bytes]:
        yield b"first;"
        raise broken

    terminal = make_terminal()
    request = httpx.Request("POST", chaos_server.url_for("/up"), content=parts())
    error = (await terminal.send(request)).failure()
    assert type(error) is InvalidRequestError, error
    assert "the request body raised ValueError" in str(error)
    assert error.__cause__ is broken
    assert isinstance(await terminal.send(get(chaos_server.url_for("/ok"))), Success)


async def test_plain_iterator_and_file_uploads_arrive_whole(
    chaos_server: ChaosServer, make_terminal: TerminalFactory, tmp_path: Any
) -> None:
    """A generator or a file object (what the sync ``Client`` is given) is read in a worker
    thread: httpx's transport refused it, aiohttp dropped it after connecting (a ReadError
    counted against the upstream), curl failed an assertion."""

    def parts() -> Iterator[bytes]:
        yield from (b"a;", b"b;", b"c;")

    path = tmp_path / "upload.bin"
    path.write_bytes(b"f" * 200_000)
    terminal = make_terminal()
    with path.open("rb") as file:
        for content in (parts(), file):
            request = httpx.Request("PUT", chaos_server.url_for("/up"), content=content)
            assert isinstance(await terminal.send(request), Success)
    bodies = [r.body for r in chaos_server.requests_for("/up")]
    assert bodies == [b"a;b;c;", b"f" * 200_000]
    assert chaos_server.requests_for("/up")[-1].header("content-length") == "200000"

    def broken() -> Iterator[bytes]:
        yield b"first;"
        raise ValueError("the caller's generator broke")

    request = httpx.Request("PUT", chaos_server.url_for("/up"), content=broken())
    error = (await terminal.send(request)).failure()
    assert type(error) is InvalidRequestError, error


async def test_an_unsupported_scheme_is_an_invalid_request(make_terminal: TerminalFactory) -> None:
    outcome = await make_terminal().send(get("ftp://127.0.0.1:21/file"))
    assert type(outcome.failure()) is InvalidRequestError


# -- cancellation and closing -----------------------------------------------------------------


async def test_cancellation_propagates_and_frees_the_connection(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/hang", Reply.fail(Fault.HANG))
    terminal = make_terminal(max_connections=2, max_keepalive=2, timeout_read=10)
    tasks = [
        asyncio.create_task(terminal.send(get(chaos_server.url_for("/hang")))) for _ in range(2)
    ]
    await wait_for_count(chaos_server, "/hang", 2)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    outcomes = await asyncio.gather(
        *(terminal.send(get(chaos_server.url_for("/ok"))) for _ in range(2))
    )
    assert all(isinstance(o, Success) for o in outcomes)  # both slots came back at once
    assert chaos_server.count("/hang") == 2  # nothing was resent


async def test_cancelling_a_stream_reader_frees_the_connection(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/events", Reply.sse(["one", "two"], event_delay=5.0))
    terminal = make_terminal(max_connections=1, max_keepalive=1, timeout_read=10)
    response = (await terminal.send(get(chaos_server.url_for("/events"), stream=True))).unwrap()

    async def read() -> None:
        async for _ in response.aiter_bytes():
            pass

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await response.aclose()
    assert isinstance(await terminal.send(get(chaos_server.url_for("/ok"))), Success)


async def test_aclose_is_clean_and_final(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    terminal = make_terminal()
    assert isinstance(await terminal.send(get(chaos_server.url_for("/ok"))), Success)
    await terminal.aclose()
    await terminal.aclose()  # twice is fine
    outcome = await terminal.send(get(chaos_server.url_for("/ok")))
    assert type(outcome.failure()) is InvalidRequestError
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_stream_left_open_can_be_closed_after_the_terminal(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    chaos_server.script("/events", Reply.sse(["one", "two"], event_delay=5.0))
    terminal = make_terminal(timeout_read=10)
    response = (await terminal.send(get(chaos_server.url_for("/events"), stream=True))).unwrap()
    await terminal.aclose()
    await response.aclose()
    await response.stream.aclose()  # type: ignore[union-attr]  # closing twice is harmless
    assert response.is_closed
    with pytest.raises(httpx.StreamClosed):
        await response.aread()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_aclose_without_any_request(
    chaos_server: ChaosServer, make_terminal: TerminalFactory
) -> None:
    terminal = make_terminal()
    await terminal.aclose()
    outcome = await terminal.send(get(chaos_server.url_for("/ok")))
    assert type(outcome.failure()) is InvalidRequestError
    assert chaos_server.count("/ok") == 0


# -- choosing a terminal ----------------------------------------------------------------------


async def test_the_client_sends_through_the_chosen_terminal(
    chaos_server: ChaosServer, kind: str
) -> None:
    chaos_server.script("/flaky", Reply.fail(Fault.RESET), Reply.json({"ok": 1}))
    settings = HttpSettings(backoff_base=0.01, backoff_max=0.02)
    async with AsyncClient(
        chaos_server.url, terminal=build(kind, settings), settings=settings
    ) as client:
        assert client.pipeline.terminal.name == kind
        outcome = await client.get("/flaky")  # the default stack retries the reset
        assert outcome.unwrap().json() == {"ok": 1}
        async with client.stream("GET", "/flaky") as streamed:
            assert [line async for line in streamed.unwrap().aiter_lines()] == ['{"ok":1}']


@pytest.mark.parametrize("fault", [Fault.RESET, Fault.CLOSE])
@pytest.mark.parametrize("reused", [False, True])
async def test_a_dropped_connection_is_one_request_on_the_wire(
    chaos_server: ChaosServer,
    make_terminal: TerminalFactory,
    kind: str,
    fault: Fault,
    reused: bool,
) -> None:
    """No backend resends behind our back (aiohttp would, for idempotent methods): every
    attempt the server sees is one that ``Retry`` counted and budgeted."""
    chaos_server.script("/dropped", Reply.fail(fault))
    if kind == "curl" and reused:
        pytest.xfail(
            "libcurl resends a request once when a reused connection dies before any byte of "
            "the answer (no option turns it off); documented in docs/terminals.md"
        )
    terminal = make_terminal()
    if reused:  # a kept-alive connection first, where backends are most tempted to resend
        assert isinstance(await terminal.send(get(f"{chaos_server.url}/warm")), Success)
    outcome = await terminal.send(get(f"{chaos_server.url}/dropped"))
    assert isinstance(outcome.failure(), TransportError)
    assert chaos_server.count("/dropped") == 1
