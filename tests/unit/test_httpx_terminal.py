"""HttpxTerminal: the seam where every backend exception becomes a typed Failure."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpcore
import httpx
import pytest

from httprail import (
    AsyncClient,
    CircuitState,
    ClientStatusError,
    ConfigError,
    ConnectError,
    ConnectionRotatedError,
    DecodeError,
    Failure,
    HttpSettings,
    InvalidRequestError,
    MaxRetriesExceededError,
    Pipeline,
    ProtocolError,
    ReadError,
    RefusedStreamError,
    RequestContext,
    RequestError,
    RequestTimeoutError,
    ServerStatusError,
    Success,
    TransportError,
    WriteError,
    set_context,
    upstream_of,
)
from httprail.middleware import CircuitBreaker, Retry, RetryBudget
from httprail.terminals import AiohttpTerminal, HttpxTerminal
from httprail.terminals._httpx import RESENDS, _count_writes
from httprail.terminals._rotation import (
    StreamProbe,
    Wire,
    WireBackend,
    _connection_of,
    classify,
)
from httprail.testing import FakeClock, MockTerminal

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


# --- HTTP/2 connection rotation (terminals/_rotation.py) -------------------------------------
#
# A scripted HTTP/2 server (h2's server side) behind httpcore's real pool and HTTP/2 code: each
# connection plays one action per complete request it receives, so every race of a rotation
# can be set up deterministically.

H2_URL = "https://h2.test/x"


class _Server:
    """Scripted HTTP/2 server: ``script[connection][request]`` is the action for that request
    (``"answer"`` when the script says nothing); ``processed`` lists what reached the app."""

    def __init__(self, script: dict[int, dict[int, str]], *, broken_from_start: bool = False):
        self.script = script
        self.broken_from_start = broken_from_start
        self.connections: list[_FakeStream] = []
        self.processed: list[tuple[int, int]] = []


class _SslObject:
    def selected_alpn_protocol(self) -> str:
        return "h2"


class _FakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.index = len(server.connections)
        server.connections.append(self)
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, validate_inbound_headers=False)
        )
        self.h2.initiate_connection()
        self.outbox = bytearray(self.h2.data_to_send())
        self.ready = asyncio.Event()
        self.requests = 0
        self.broken = server.broken_from_start
        self.dying = False  # the next request's HEADERS will find the connection gone
        self.closed = False

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return self

    def get_extra_info(self, info: str) -> Any:
        return _SslObject() if info == "ssl_object" else None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self.broken or (self.dying and _has_headers(buffer)):
            self.broken = True
            raise httpcore.WriteError("[Errno 32] Broken pipe")
        for event in self.h2.receive_data(buffer) if buffer else ():
            if isinstance(event, h2.events.StreamEnded):
                self.requests += 1
                action = self.server.script.get(self.index, {}).get(self.requests, "answer")
                self._act(action, event.stream_id)
        self.outbox += self.h2.data_to_send()
        self.ready.set()

    def _act(self, action: str, stream_id: int) -> None:
        if action != "refuse" and not action.startswith("reset"):
            self.server.processed.append((self.index, stream_id))
        if action in ("answer", "answer+break"):
            self.h2.send_headers(stream_id, [(":status", "200"), ("content-length", "2")])
            self.h2.send_data(stream_id, b"ok", end_stream=True)
            self.dying = action == "answer+break"  # the server goes away after answering
        elif action == "refuse":  # GOAWAY naming the stream before this one, then gone
            self.h2.close_connection(last_stream_id=stream_id - 2)
            self.broken = self.closed = True
        elif action == "rotate":  # GOAWAY naming this stream, never answered, then gone
            self.h2.close_connection(last_stream_id=stream_id)
            self.broken = self.closed = True
        elif action == "reset-refused":
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif action == "reset-error":
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif action == "vanish":  # the connection dies with the request in flight
            self.broken = self.closed = True

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        while not self.outbox:
            if self.closed:
                return b""
            self.ready.clear()
            await self.ready.wait()
        data = bytes(self.outbox[:max_bytes])
        del self.outbox[:max_bytes]
        return data

    async def aclose(self) -> None:
        self.closed = True


def _has_headers(buffer: bytes) -> bool:
    """Whether ``buffer`` (whole HTTP/2 frames, maybe after the preface) holds a HEADERS frame."""
    data = buffer.removeprefix(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    while len(data) >= 9:
        if data[3] == 0x1:
            return True
        data = data[9 + int.from_bytes(data[:3], "big") :]
    return False


class _FakeBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, server: _Server) -> None:
        self.server = server

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _FakeStream(self.server)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _FakeStream(self.server)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def h2_terminal(server: _Server) -> HttpxTerminal:
    """An HTTP/2 ``HttpxTerminal`` whose pool connects to ``server`` (through its Wires)."""
    terminal = HttpxTerminal(HttpSettings(http2=True, trust_env=False))
    pool = terminal.client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool._network_backend, WireBackend)
    pool._network_backend = WireBackend(_FakeBackend(server))
    return terminal


async def send_h2(terminal: HttpxTerminal, method: str = "GET") -> Any:
    content = b"{}" if method == "POST" else None
    request = httpx.Request(method, H2_URL, content=content)
    set_context(request, RequestContext())
    return await terminal.send(request)


async def test_http2_is_spoken_through_the_counting_wires() -> None:
    """The scripted server answers over HTTP/2, through the wrapped network streams."""
    server = _Server({})
    terminal = h2_terminal(server)
    outcome = await send_h2(terminal)
    await terminal.aclose()
    assert outcome.unwrap().http_version == "HTTP/2"
    assert server.processed == [(0, 1)]


async def test_a_stream_above_the_goaways_last_stream_id_is_resent_for_any_method() -> None:
    """A POST whose stream the GOAWAY names as unprocessed is sent again on a new connection."""
    server = _Server({0: {2: "refuse"}})
    terminal = h2_terminal(server)
    first, second = await send_h2(terminal, "POST"), await send_h2(terminal, "POST")
    await terminal.aclose()
    assert isinstance(first, Success)
    assert isinstance(second, Success)
    assert server.processed == [(0, 1), (1, 1)]  # the refused one reached no app


async def test_a_request_not_written_before_a_used_connection_broke_is_resent() -> None:
    """The server went away after answering: the next POST's headers never left, so it is
    resent on a fresh connection and processed once."""
    server = _Server({0: {1: "answer+break"}})
    terminal = h2_terminal(server)
    first, second = await send_h2(terminal, "POST"), await send_h2(terminal, "POST")
    await terminal.aclose()
    assert isinstance(first, Success)
    assert isinstance(second, Success)
    assert server.processed == [(0, 1), (1, 1)]


async def test_a_request_in_flight_when_a_used_connection_rotates_is_connection_rotated() -> None:
    """The GOAWAY includes the request (it may have been processed): ConnectionRotatedError,
    not resent, not counted against the upstream."""
    server = _Server({0: {2: "rotate"}})
    terminal = h2_terminal(server)
    await send_h2(terminal, "POST")
    outcome = await send_h2(terminal, "POST")
    await terminal.aclose()
    error = outcome.failure()
    assert isinstance(error, ConnectionRotatedError)
    assert (error.counts_against_upstream, error.never_processed) == (False, False)
    assert isinstance(error.__cause__, httpx.TransportError)
    assert "closed a used connection" in str(error)
    assert server.processed == [(0, 1), (0, 3)]


async def test_a_used_connection_that_vanishes_with_the_request_is_connection_rotated() -> None:
    """No GOAWAY at all, the connection just ends after serving: ConnectionRotatedError."""
    server = _Server({0: {2: "vanish"}})
    terminal = h2_terminal(server)
    await send_h2(terminal)
    outcome = await send_h2(terminal)
    await terminal.aclose()
    assert isinstance(outcome.failure(), ConnectionRotatedError)


async def test_a_connection_that_never_answered_fails_as_usual() -> None:
    """A fresh connection that breaks says nothing good about the server: a counted error."""
    terminal = h2_terminal(_Server({}, broken_from_start=True))
    outcome = await send_h2(terminal)
    await terminal.aclose()
    error = outcome.failure()
    assert type(error) is WriteError
    assert error.counts_against_upstream


async def test_refused_stream_resets_are_resent_and_other_resets_are_protocol_errors() -> None:
    """RST_STREAM REFUSED_STREAM: resent at once; RST_STREAM INTERNAL_ERROR: ProtocolError."""
    server = _Server({0: {1: "reset-refused", 3: "reset-error"}})
    terminal = h2_terminal(server)
    refused_then_answered = await send_h2(terminal, "POST")
    reset = await send_h2(terminal)
    await terminal.aclose()
    assert isinstance(refused_then_answered, Success)
    assert type(reset.failure()) is ProtocolError
    assert server.processed == [(0, 3)]


async def test_resends_stop_after_two_with_a_refused_stream_error() -> None:
    """The server refuses every stream: two resends, then RefusedStreamError (never
    processed)."""
    server = _Server({0: {1: "reset-refused", 2: "reset-refused", 3: "reset-refused"}})
    terminal = h2_terminal(server)
    outcome = await send_h2(terminal, "POST")
    await terminal.aclose()
    error = outcome.failure()
    assert isinstance(error, RefusedStreamError)
    assert (error.never_processed, error.counts_against_upstream) == (True, False)
    assert server.connections[0].requests == 1 + RESENDS
    assert server.processed == []


async def test_a_streamed_upload_is_not_resent() -> None:
    """A body that cannot be replayed is not sent twice: the refusal comes back as it is."""

    async def body() -> AsyncIterator[bytes]:
        yield b"{}"

    server = _Server({0: {1: "reset-refused"}})
    terminal = h2_terminal(server)
    request = httpx.Request("POST", H2_URL, content=body())
    set_context(request, RequestContext())
    outcome = await terminal.send(request)
    await terminal.aclose()
    assert isinstance(outcome.failure(), RefusedStreamError)
    assert len(server.connections) == 1


async def test_the_callers_own_trace_hook_still_sees_every_event() -> None:
    """A ``trace`` extension set by the caller is called, with httpcore's events, around ours."""
    seen: list[str] = []

    async def trace(name: str, info: dict[str, Any]) -> None:
        seen.append(name)

    terminal = h2_terminal(_Server({}))
    request = httpx.Request("GET", H2_URL, extensions={"trace": trace})
    set_context(request, RequestContext())
    await terminal.send(request)
    await terminal.send(request)  # a second attempt keeps the caller's hook, once
    await terminal.aclose()
    assert seen.count("http2.send_request_headers.started") == 2
    assert isinstance(request.extensions["trace"], StreamProbe)
    assert request.extensions["trace"].user is trace


def test_classify_says_nothing_without_a_probe_or_for_other_errors() -> None:
    """No probe, a timeout, an unknown connection, or a connection that never answered and
    sent no GOAWAY: the ordinary mapping."""
    probe = StreamProbe(None)
    assert classify(httpx.ReadError("x"), None) is None
    assert classify(httpx.ReadTimeout("x"), probe) is None
    assert classify(httpx.ReadError("x"), probe) is None  # no connection seen
    probe.connection, probe.wire = object(), Wire(_FakeStream(_Server({})))
    assert classify(httpx.ReadError("x"), probe) is None


def test_the_connection_is_found_only_among_httpcores_frames() -> None:
    """Called from anywhere but httpcore's HTTP/2 connection, the probe finds no connection."""
    assert _connection_of(None) is None
    assert _connection_of(sys._getframe()) is None


async def test_a_wire_passes_everything_through_and_numbers_writes() -> None:
    """``Wire`` delegates reads, TLS, extra info and close; only write errors mark it broken."""
    inner = _FakeStream(_Server({}))
    wire = Wire(inner)
    assert await wire.start_tls(ssl.create_default_context()) is not wire
    assert isinstance(wire.get_extra_info("ssl_object"), _SslObject)
    assert wire._stream is None
    assert len(await wire.read(3)) == 3  # the server's first SETTINGS frame, 3 bytes of it
    inner.broken = True
    with pytest.raises(httpcore.WriteError):
        await wire.write(b"x")
    assert (wire.writes, wire.broke_at) == (1, 1)
    with pytest.raises(httpcore.WriteError):
        await wire.write(b"y")
    assert (wire.writes, wire.broke_at) == (2, 1)  # the first broken write is the one kept
    await wire.aclose()
    assert inner.closed
    backend = WireBackend(_FakeBackend(_Server({})))
    assert isinstance(await backend.connect_unix_socket("/nowhere"), Wire)
    await backend.sleep(0)


# --- Which terminal speaks HTTP/2 -------------------------------------------------------------


def test_http2_true_without_a_terminal_picks_the_httpx_terminal() -> None:
    """``HttpSettings(http2=True)`` and no terminal: ``HttpxTerminal``; unset: aiohttp."""
    asked = AsyncClient(settings=HttpSettings(http2=True))
    unset = AsyncClient(settings=HttpSettings())
    assert isinstance(asked.pipeline.terminal, HttpxTerminal)
    assert repr(asked.pipeline.terminal) == "HttpxTerminal(http2=True)"
    assert isinstance(unset.pipeline.terminal, AiohttpTerminal)


def test_the_aiohttp_terminal_refuses_http2_naming_what_to_use() -> None:
    """aiohttp speaks HTTP/1.1 only: asking it for HTTP/2 is a ConfigError, never ignored."""
    with pytest.raises(ConfigError, match=r"AiohttpTerminal.*HTTP/1\.1.*HttpxTerminal"):
        AiohttpTerminal(HttpSettings(http2=True))
    with pytest.raises(ConfigError, match=r"terminal=AiohttpTerminal.*HttpxTerminal"):
        AsyncClient(settings=HttpSettings(http2=True), terminal=AiohttpTerminal())


def test_the_httpx_terminal_offers_http2_unless_it_is_turned_off() -> None:
    """Unset or true: HTTP/2 offered by ALPN; false: HTTP/1.1 only."""
    offered = {value: HttpxTerminal(HttpSettings(http2=value)).http2 for value in (None, True)}
    assert offered == {None: True, True: True}
    off = HttpxTerminal(HttpSettings(http2=False))
    assert (off.http2, repr(off)) == (False, "HttpxTerminal(http2=False)")


async def test_no_trace_hook_is_installed_when_http2_is_off() -> None:
    """HTTP/1.1 only: the terminal adds nothing to the request (no rotation to watch)."""
    answer = httpx.MockTransport(lambda request: httpx.Response(200, text="ok"))
    terminal = HttpxTerminal(HttpSettings(http2=False), transport=answer)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext())
    outcome = await terminal.send(request)
    await terminal.aclose()
    assert isinstance(outcome, Success)
    assert "trace" not in request.extensions


def test_write_counting_wraps_a_pool_once_and_leaves_other_transports_alone() -> None:
    """``_count_writes`` wraps httpcore's backend once; a transport without a pool is untouched."""
    transport = httpx.AsyncHTTPTransport(http2=True)
    _count_writes(transport)
    wrapped = transport._pool._network_backend
    _count_writes(transport)
    assert transport._pool._network_backend is wrapped
    assert isinstance(wrapped, WireBackend)
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    _count_writes(mock)  # type: ignore[arg-type]
    assert not hasattr(mock, "_pool")


# --- What the default stack does with a rotation ----------------------------------------------


async def test_a_rotation_is_retried_at_once_without_the_budget_or_the_breaker() -> None:
    """Retry resends a GET after ConnectionRotatedError and a POST after RefusedStreamError at
    once (no backoff: the upstream did not fail), spending no retry budget, and the breaker
    stays closed through a burst of them."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, clock=clock)  # no retry allowed by it
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    retry = Retry(sleep=clock.sleep, clock=clock, budget=budget)
    rotated = [ConnectionRotatedError("rotated")] * 5
    refused = [RefusedStreamError("refused")] * 5
    terminal = MockTerminal.sequence(
        [*rotated, httpx.Response(200), *refused[:2], httpx.Response(200)]
    )
    pipeline = Pipeline([retry, breaker], terminal)
    outcomes = [await pipeline.send(httpx.Request("GET", URL)) for _ in range(2)]
    outcomes.append(await pipeline.send(httpx.Request("POST", URL, content=b"{}")))
    assert type(outcomes[0].failure()) is MaxRetriesExceededError  # 4 rotated attempts
    assert [type(o) for o in outcomes[1:]] == [Success, Success]
    assert set(clock.sleeps) == {0.0}
    assert await breaker.state(upstream_of(terminal.requests[0])) is CircuitState.CLOSED
