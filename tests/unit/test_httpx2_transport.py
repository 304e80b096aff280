"""The transport under an ``httpx2.AsyncClient``: requests converted at the seam, responses and
errors handed back as httpx2's, bodies replayable by Retry."""

from __future__ import annotations

import gzip
import sys
from collections.abc import AsyncIterator

import httpx
import httpx2
import pytest

from httprail import (
    AsyncClient,
    CircuitBreakerOpenError,
    ConfigError,
    ConnectError,
    InvalidRequestError,
    Pipeline,
    ReadError,
    RequestError,
    RequestTimeoutError,
    TimeoutPhase,
    get_context,
)
from httprail._context import EXTENSION_KEY
from httprail.middleware import Retry
from httprail.terminals import (
    IDEMPOTENCY_HEADER,
    Httpx2PipelineTransport,
    PipelineTransport,
    to_httpx2_exception,
)
from httprail.terminals import _httpx2 as flavour
from httprail.testing import FakeClock, MockTerminal
from httprail.testing._mock import Handler

URL = "https://api.test/v1/things"


def build(
    handler: Handler | MockTerminal, *plugins: object, **options: object
) -> tuple[httpx2.AsyncClient, MockTerminal]:
    terminal = handler if isinstance(handler, MockTerminal) else MockTerminal(handler)
    pipeline = Pipeline(plugins, terminal)  # type: ignore[arg-type]
    transport = pipeline.as_httpx2_transport(**options)  # type: ignore[arg-type]
    return httpx2.AsyncClient(transport=transport), terminal


class Chunks(httpx.AsyncByteStream):
    """A body that yields ``chunks`` and then raises ``error`` (if any)."""

    def __init__(self, *chunks: bytes, error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


# -- requests in, responses out ------------------------------------------------------------------


async def test_a_request_reaches_the_chain_as_httpx_and_the_answer_returns_as_httpx2() -> None:
    client, terminal = build(lambda r: httpx.Response(201, json={"id": 7}, headers={"x-a": "1"}))
    async with client:
        response = await client.post(URL, json={"name": "n"}, headers={"X-Trace": "t-1"})
    assert isinstance(response, httpx2.Response)
    assert response.status_code == 201
    assert response.headers["x-a"] == "1"
    assert response.json() == {"id": 7}
    assert isinstance(response.request, httpx2.Request)
    seen = terminal.requests[0]
    assert type(seen) is httpx.Request
    assert (seen.method, str(seen.url)) == ("POST", URL)
    assert seen.headers["x-trace"] == "t-1"
    assert seen.content == b'{"name":"n"}'
    assert isinstance(seen.stream, httpx.ByteStream)
    # One extensions dict: what the chain set, the caller's request holds too.
    assert get_context(seen) is response.request.extensions[EXTENSION_KEY]


@pytest.mark.parametrize("status", [400, 401, 429, 503])
async def test_an_error_status_is_an_httpx2_response_with_its_body(status: int) -> None:
    client, _ = build(lambda r: httpx.Response(status, json={"error": {"message": "no"}}))
    async with client:
        response = await client.get(URL)
    assert response.status_code == status
    assert response.json() == {"error": {"message": "no"}}
    with pytest.raises(httpx2.HTTPStatusError):
        response.raise_for_status()


async def test_a_body_the_chain_read_is_handed_over_decoded() -> None:
    body = gzip.compress(b"hello " * 100)
    client, _ = build(
        lambda r: httpx.Response(200, headers={"content-encoding": "gzip"}, content=body),
        stream=False,
    )
    async with client:
        response = await client.get(URL)
    assert response.text == "hello " * 100
    assert "content-encoding" not in response.headers


async def test_an_unread_body_streams_to_the_httpx2_caller_and_closes_the_inner_one() -> None:
    body = Chunks(b"a", b"b", b"c")
    client, _ = build(lambda r: httpx.Response(200, stream=body))
    async with client, client.stream("GET", URL) as response:
        assert [chunk async for chunk in response.aiter_bytes()] == [b"a", b"b", b"c"]
    assert body.closed


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ReadError("reset"), httpx2.ReadError),
        (OSError("socket gone"), httpx2.TransportError),
        (httpx2.RemoteProtocolError("cut"), httpx2.RemoteProtocolError),
    ],
    ids=["httpx-error", "foreign-error", "httpx2-error"],
)
async def test_a_body_that_breaks_midway_raises_httpx2_errors_after_the_chunks(
    error: Exception, expected: type[Exception]
) -> None:
    client, _ = build(lambda r: httpx.Response(200, stream=Chunks(b"a", b"b", error=error)))
    received: list[bytes] = []

    async def consume(response: httpx2.Response) -> None:
        async for chunk in response.aiter_bytes():
            received.append(chunk)

    async with client, client.stream("GET", URL) as response:
        with pytest.raises(expected) as raised:
            await consume(response)
    assert received == [b"a", b"b"]
    assert not isinstance(raised.value, httpx.HTTPError)
    if not isinstance(error, httpx2.HTTPError):  # httpx2's own pass through unchanged
        assert isinstance(raised.value.__cause__, RequestError)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("connect", httpx2.ConnectTimeout),
        ("read", httpx2.ReadTimeout),
        ("write", httpx2.WriteTimeout),
        ("pool", httpx2.PoolTimeout),
        ("total", httpx2.ReadTimeout),
    ],
)
async def test_a_timeout_raises_httpx2s_timeout_of_its_phase(
    phase: TimeoutPhase, expected: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> RequestError:
        return RequestTimeoutError("slow", phase=phase, request=request)

    client, _ = build(handler)
    async with client:
        with pytest.raises(httpx2.TimeoutException) as raised:
            await client.get(URL)
    assert type(raised.value) is expected
    assert isinstance(raised.value.request, httpx2.Request)
    assert isinstance(raised.value.__cause__, RequestTimeoutError)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (lambda r: ConnectError("refused", request=r), httpx2.ConnectError),
        (lambda r: ReadError("reset", request=r), httpx2.ReadError),
        (
            lambda r: CircuitBreakerOpenError(upstream="u", retry_after=1, request=r),
            httpx2.ConnectError,
        ),
        (lambda r: InvalidRequestError("bad", request=r), httpx2.LocalProtocolError),
    ],
)
async def test_a_failure_without_a_response_raises_the_matching_httpx2_error(
    error: object, expected: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> RequestError:
        return error(request)  # type: ignore[operator,no-any-return]

    client, _ = build(handler)
    async with client:
        with pytest.raises(httpx2.RequestError) as raised:
            await client.get(URL)
    assert type(raised.value) is expected


def test_a_backends_own_httpx_subclass_becomes_its_nearest_httpx2_twin() -> None:
    class BackendReset(httpx.ReadError):
        pass

    request = httpx.Request("GET", URL)
    error = ReadError("reset", request=request)
    error.__cause__ = BackendReset("reset")
    for _ in range(2):  # the second time from the cache
        mapped = to_httpx2_exception(error, httpx2.Request("GET", URL))
        assert type(mapped) is httpx2.ReadError
        assert mapped.__cause__ is error


# -- retries -------------------------------------------------------------------------------------


async def test_a_post_from_httpx2_is_replayed_with_the_same_body_and_key() -> None:
    clock = FakeClock()
    terminal = MockTerminal.sequence([httpx.Response(503), httpx.Response(200, json={})])
    client, _ = build(terminal, Retry(sleep=clock.sleep, clock=clock))
    async with client:
        response = await client.post(URL, json={"q": "hello"})
    assert response.status_code == 200
    assert [r.content for r in terminal.requests] == [b'{"q":"hello"}'] * 2
    keys = {r.headers[IDEMPOTENCY_HEADER] for r in terminal.requests}
    assert len(keys) == 1
    assert response.request.headers[IDEMPOTENCY_HEADER] in keys


async def test_a_streamed_upload_from_httpx2_is_sent_whole_once_and_never_replayed() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"part-1,"
        yield b"part-2"

    received: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        received.append(b"".join([chunk async for chunk in request.stream]))  # type: ignore[union-attr]
        return httpx.Response(503)

    clock = FakeClock()
    client, terminal = build(handler, Retry(sleep=clock.sleep, clock=clock))
    async with client:
        response = await client.post(URL, content=body())
    assert response.status_code == 503
    assert received == [b"part-1,part-2"]
    assert len(terminal.requests) == 1


# -- the two transport classes -------------------------------------------------------------------


def test_the_httpx2_transport_has_no_httpx_class_in_its_bases() -> None:
    pipeline = Pipeline([], MockTerminal(lambda r: httpx.Response(200)))
    transport = pipeline.as_httpx2_transport()
    assert isinstance(transport, httpx2.AsyncBaseTransport)
    assert isinstance(transport, Httpx2PipelineTransport)
    # anthropic's DefaultAsyncHttpxClient refuses a transport with any httpx class in its MRO.
    assert all(cls.__module__.partition(".")[0] != "httpx" for cls in type(transport).__mro__)
    assert repr(transport) == f"Httpx2PipelineTransport({pipeline!r})"


@pytest.mark.parametrize("kind", ["httpx-transport-in-httpx2", "httpx2-transport-in-httpx"])
async def test_either_transport_serves_either_client(kind: str) -> None:
    pipeline = Pipeline([], MockTerminal(lambda r: httpx.Response(200, text="ok")))
    client: httpx.AsyncClient | httpx2.AsyncClient
    if kind == "httpx-transport-in-httpx2":
        client = httpx2.AsyncClient(transport=pipeline.as_httpx_transport())
        expected: type[object] = httpx2.Response
    else:
        client = httpx.AsyncClient(transport=pipeline.as_httpx2_transport())  # type: ignore[arg-type]
        expected = httpx.Response
    async with client:
        response = await client.get(URL)
    assert isinstance(response, expected)
    assert response.text == "ok"


async def test_a_request_of_another_library_is_a_config_error() -> None:
    pipeline = Pipeline([], MockTerminal(lambda r: httpx.Response(200)))
    transport = pipeline.as_httpx_transport()
    with pytest.raises(ConfigError, match=r"serves httpx and httpx2 clients; .*builtins\.dict"):
        await transport.handle_async_request({"method": "GET"})  # type: ignore[arg-type]


async def test_closing_the_httpx2_client_closes_the_pipeline_and_refuses_more() -> None:
    closed: list[bool] = []
    terminal = MockTerminal(lambda r: httpx.Response(200))
    terminal.aclose = lambda: closed.append(True) or _done()  # type: ignore[method-assign]
    pipeline = Pipeline([], terminal)
    transport = pipeline.as_httpx2_transport()
    async with httpx2.AsyncClient(transport=transport):
        pass
    await transport.aclose()
    assert closed == [True]
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx2.Request("GET", URL))


async def _done() -> None:
    return None


async def test_an_async_client_lends_its_chain_to_an_httpx2_client() -> None:
    terminal = MockTerminal(lambda r: httpx.Response(200))
    client = AsyncClient(plugins=[], terminal=terminal, provider="local")
    transport = client.as_httpx2_transport()
    async with httpx2.AsyncClient(transport=transport) as sdk:
        await sdk.get(URL)
    assert get_context(terminal.requests[0]).provider == "local"


def test_without_httpx2_installed_as_httpx2_transport_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "httprail.terminals._httpx2", None)
    pipeline = Pipeline([], MockTerminal(lambda r: httpx.Response(200)))
    with pytest.raises(ConfigError, match=r"needs the httpx2 package"):
        pipeline.as_httpx2_transport()


# -- the fast conversion -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        httpx2.Request("GET", "https://example.com"),
        httpx2.Request("GET", "http://[::1]:8080/a/b?x=1&x=2#f"),
        httpx2.Request("PATCH", "https://u:p@xn--bcher-kva.example/%7Euser?q=caf%C3%A9"),
        httpx2.Request(
            "POST",
            "https://api.test/v1/chat",
            headers=[(b"Authorization", b"Bearer sk"), (b"X-Dup", b"1"), (b"x-dup", b"2")],
            content=b"body",
        ),
    ],
    ids=["plain", "ipv6", "idna-userinfo", "headers"],
)
def test_the_fast_conversion_builds_what_httpx_builds(request_: httpx2.Request) -> None:
    assert flavour.FAST
    body = httpx.ByteStream(b"".join(request_.stream))  # type: ignore[arg-type]
    fast = flavour._fast_core(request_, body)
    slow = flavour._slow_core(request_, body)
    assert flavour._state(fast) == flavour._state(slow)
    assert fast.url == slow.url
    assert fast.headers.multi_items() == slow.headers.multi_items()
    assert not isinstance(fast, PipelineTransport)


def test_the_slow_conversion_hands_a_streamed_body_on_unread() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"x"

    request = httpx2.Request("PUT", URL, content=parts())
    core = flavour.HTTPX2.adopt(request)
    slow = flavour._slow_core(request, core.stream)
    assert slow.stream is core.stream
    with pytest.raises(httpx.RequestNotRead):
        _ = slow.content


@pytest.mark.parametrize("how", ["differs", "raises"])
def test_the_fast_conversion_is_not_used_when_it_disagrees(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    def other(request: httpx2.Request, body: object) -> httpx.Request:
        if how == "raises":
            raise AttributeError("_uri_reference")
        return httpx.Request("GET", "https://elsewhere.test")

    monkeypatch.setattr(flavour, "_fast_core", other)
    assert flavour._agrees() is False
