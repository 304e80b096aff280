"""PipelineTransport: a pipeline as an httpx transport, every mapping row of the seam back."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from httprail import (
    AsyncClient,
    AuthError,
    BulkheadFullError,
    CircuitBreakerOpenError,
    ConfigError,
    ConnectError,
    DecodeError,
    Failure,
    InvalidRequestError,
    MaxRetriesExceededError,
    Pipeline,
    ProtocolError,
    RateLimitedError,
    ReadError,
    RequestContext,
    RequestError,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    StatusError,
    TimeoutPhase,
    TransportError,
    WriteError,
    get_context,
    set_context,
)
from httprail.middleware import Retry, Timeout
from httprail.terminals import (
    IDEMPOTENCY_HEADER,
    SDK_RETRY_STATUSES,
    HttpxTerminal,
    PipelineTransport,
    response_of,
    to_httpx_exception,
)
from httprail.testing import FakeClock, MockTerminal
from httprail.testing._mock import Handler

URL = "https://api.test/v1/things"


def build(
    handler: Handler | MockTerminal, *plugins: object, **options: object
) -> tuple[httpx.AsyncClient, MockTerminal]:
    terminal = handler if isinstance(handler, MockTerminal) else MockTerminal(handler)
    pipeline = Pipeline(plugins, terminal)  # type: ignore[arg-type]
    transport = pipeline.as_httpx_transport(**options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport), terminal


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__


class Chunks(httpx.AsyncByteStream):
    """A body that yields ``chunks`` and then raises ``error`` (if any), recording its fate."""

    def __init__(self, *chunks: bytes, error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.produced = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.produced += 1
            yield chunk
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


# -- responses ------------------------------------------------------------------------------


async def test_a_success_reaches_the_caller_with_status_headers_and_body() -> None:
    client, terminal = build(lambda r: httpx.Response(201, json={"id": 7}, headers={"x-a": "1"}))
    async with client:
        response = await client.post(URL, json={"name": "n"})
    assert response.status_code == 201
    assert response.headers["x-a"] == "1"
    assert response.json() == {"id": 7}
    assert response.request is terminal.requests[0]


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
async def test_an_error_status_is_returned_as_a_response_with_its_body(status: int) -> None:
    client, _ = build(lambda r: httpx.Response(status, json={"error": {"message": "no"}}))
    async with client:
        response = await client.get(URL)
    assert response.status_code == status
    assert response.json() == {"error": {"message": "no"}}
    with pytest.raises(httpx.HTTPStatusError):
        response.raise_for_status()


async def test_an_error_status_streamed_by_the_caller_is_readable() -> None:
    client, _ = build(lambda r: httpx.Response(503, text="down"))
    async with client, client.stream("GET", URL) as response:
        assert response.status_code == 503
        assert await response.aread() == b"down"


async def test_retries_run_inside_and_the_last_error_response_is_returned() -> None:
    clock = FakeClock()
    terminal = MockTerminal.sequence(
        [httpx.Response(503, text="first"), httpx.Response(502, text="last")]
    )
    client, _ = build(terminal, Retry(max_retries=1, sleep=clock.sleep, clock=clock))
    async with client:
        response = await client.get(URL)
    assert (response.status_code, response.text) == (502, "last")
    assert len(terminal.requests) == 2


async def test_an_error_carrying_a_response_attribute_returns_that_response() -> None:
    class Refused(RequestError):
        def __init__(self, response: httpx.Response) -> None:
            super().__init__("refused")
            self.response = response

    client, _ = build(lambda r: Refused(httpx.Response(418, text="teapot", request=r)))
    async with client:
        response = await client.get(URL)
    assert (response.status_code, response.text) == (418, "teapot")


def test_response_of() -> None:
    request = httpx.Request("GET", URL)
    response = httpx.Response(503, request=request)
    status = StatusError.from_response(response)
    assert response_of(status) is response
    assert response_of(MaxRetriesExceededError([ReadError("r"), status])) is response
    assert response_of(MaxRetriesExceededError([status, ReadError("r")])) is None
    assert response_of(ConnectError("refused")) is None


# -- failures without a response: the mapping table -----------------------------------------

TIMEOUT_ROWS: list[tuple[TimeoutPhase, type[httpx.TimeoutException]]] = [
    ("connect", httpx.ConnectTimeout),
    ("read", httpx.ReadTimeout),
    ("write", httpx.WriteTimeout),
    ("pool", httpx.PoolTimeout),
    ("attempt", httpx.ReadTimeout),
    ("total", httpx.ReadTimeout),
]


@pytest.mark.parametrize(("phase", "expected"), TIMEOUT_ROWS)
async def test_a_timeout_raises_the_httpx_timeout_of_its_phase(
    phase: TimeoutPhase, expected: type[httpx.TimeoutException]
) -> None:
    error = RequestTimeoutError("too slow", phase=phase)
    client, _ = build(lambda r: error)
    async with client:
        with pytest.raises(httpx.TimeoutException) as raised:
            await client.get(URL)
    assert type(raised.value) is expected
    assert raised.value.__cause__ is error


ERROR_ROWS: list[tuple[RequestError, type[httpx.RequestError]]] = [
    (ConnectError("refused"), httpx.ConnectError),
    (ReadError("reset"), httpx.ReadError),
    (WriteError("broken pipe"), httpx.WriteError),
    (ProtocolError("garbage"), httpx.RemoteProtocolError),
    (TransportError("something else"), httpx.NetworkError),
    (CircuitBreakerOpenError(upstream="u", retry_after=3.0), httpx.ConnectError),
    (BulkheadFullError(upstream="u", limit=4), httpx.PoolTimeout),
    (RateLimitedError(upstream="u", retry_after=1.0), httpx.PoolTimeout),
    (InvalidRequestError("bad header"), httpx.LocalProtocolError),
    (DecodeError("not gzip"), httpx.DecodingError),
    (AuthError("no token"), httpx.TransportError),
    (RequestError("a plugin's own error"), httpx.TransportError),
    (MaxRetriesExceededError([ConnectError("a"), ReadError("b")]), httpx.ReadError),
    (
        MaxRetriesExceededError([ReadError("a"), RequestTimeoutError("t", phase="connect")]),
        httpx.ConnectTimeout,
    ),
    (RetryBudgetExhaustedError([ConnectError("a")], upstream="u"), httpx.ConnectError),
]


@pytest.mark.parametrize(
    ("error", "expected"), ERROR_ROWS, ids=[type(e).__name__ for e, _ in ERROR_ROWS]
)
async def test_a_failure_without_a_response_raises_the_matching_httpx_error(
    error: RequestError, expected: type[httpx.RequestError]
) -> None:
    client, terminal = build(lambda r: error)
    async with client:
        with pytest.raises(httpx.RequestError) as raised:
            await client.get(URL)
    assert type(raised.value) is expected
    assert raised.value.__cause__ is error  # the httprail error is one step away
    assert raised.value.request is terminal.requests[0]
    assert str(error.message) in str(raised.value)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransportError("closing"), httpx.CloseError),
        (InvalidRequestError("ftp://"), httpx.UnsupportedProtocol),
        (AuthError("token endpoint down"), httpx.ConnectError),
        (ReadError("reset"), httpx.ReadError),
    ],
    ids=["close", "unsupported", "auth-connect", "same"],
)
def test_an_error_made_from_a_fitting_httpx_exception_keeps_its_class(
    error: RequestError, expected: type[httpx.RequestError]
) -> None:
    error.__cause__ = expected("original")
    exc = to_httpx_exception(error)
    assert type(exc) is expected
    assert exc.__cause__ is error


def test_a_foreign_subclass_with_another_signature_falls_back_to_its_httpx_base() -> None:
    class BackendReset(httpx.ReadError):
        def __init__(self, code: int) -> None:
            super().__init__(f"reset {code}")

    error = ReadError("reset")
    error.__cause__ = BackendReset(104)
    exc = to_httpx_exception(error)
    assert type(exc) is httpx.ReadError
    assert exc.__cause__ is error


def test_a_more_precise_cause_that_does_not_fit_the_row_is_ignored() -> None:
    error = ConnectError("refused")
    error.__cause__ = httpx.ReadError("odd")
    assert type(to_httpx_exception(error)) is httpx.ConnectError


def test_to_httpx_exception_takes_the_request_given_or_the_errors() -> None:
    mine, theirs = httpx.Request("GET", URL), httpx.Request("GET", URL)
    assert to_httpx_exception(ReadError("r", request=theirs)).request is theirs
    assert to_httpx_exception(ReadError("r", request=theirs), mine).request is mine


async def test_the_sdk_sees_httpx_errors_through_its_usual_except_clauses() -> None:
    client, _ = build(lambda r: CircuitBreakerOpenError(upstream="u", retry_after=1.0))
    async with client:
        with pytest.raises(httpx.TransportError) as raised:
            await client.get(URL)
    assert any(isinstance(e, CircuitBreakerOpenError) for e in chain(raised.value))


# -- streaming --------------------------------------------------------------------------------


def test_the_default_context_is_streamed() -> None:
    seen: list[RequestContext] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(get_context(request))
        return httpx.Response(200)

    async def run(**options: object) -> None:
        client, _ = build(handler, **options)
        async with client:
            await client.get(URL)

    asyncio.run(run())
    asyncio.run(run(stream=False))
    asyncio.run(run(stream=lambda r: r.url.path.endswith("things")))
    asyncio.run(run(stream=lambda r: False))
    assert [ctx.stream for ctx in seen] == [True, False, True, False]


async def test_a_context_already_on_the_request_is_kept_with_the_stream_flag_set() -> None:
    seen: list[RequestContext] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(get_context(request))
        return httpx.Response(200)

    client, _ = build(handler)

    async def tag(request: httpx.Request) -> None:
        set_context(request, RequestContext(provider="deepseek"))

    client.event_hooks["request"] = [tag]
    async with client:
        await client.get(URL)
    assert (seen[0].provider, seen[0].stream) == ("deepseek", True)


async def test_a_request_object_sent_again_is_a_new_call_not_a_stale_one() -> None:
    clock = FakeClock()
    seen: list[RequestContext] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(get_context(request))
        return httpx.Response(503 if len(seen) == 1 else 200)

    terminal = MockTerminal(handler)
    stages = [Timeout(5, clock=clock), Retry(sleep=clock.sleep, clock=clock, backoff_max=1)]
    transport = Pipeline(stages, terminal).as_httpx_transport()
    request = httpx.Request("GET", URL)
    assert (await transport.handle_async_request(request)).status_code == 200
    clock.advance(60)  # long past the first call's deadline
    assert (await transport.handle_async_request(request)).status_code == 200
    assert [ctx.attempt for ctx in seen] == [1, 2, 1]
    assert seen[2].deadline == clock() + 5


async def test_an_unread_body_streams_to_the_caller_lazily_and_closes_the_inner_one() -> None:
    body = Chunks(b"data: 1\n\n", b"data: 2\n\n")
    client, _ = build(lambda r: httpx.Response(200, stream=body))
    async with client, client.stream("GET", URL) as response:
        assert body.produced == 0  # nothing read before the caller asks
        parts = [part async for part in response.aiter_bytes()]
    assert parts == [b"data: 1\n\n", b"data: 2\n\n"]
    assert body.closed


async def test_closing_a_streamed_response_early_closes_the_inner_body() -> None:
    body = Chunks(b"a", b"b", b"c")
    client, _ = build(lambda r: httpx.Response(200, stream=body))
    async with client:
        async with client.stream("GET", URL) as response:
            async for _ in response.aiter_raw():
                break
        assert body.closed


async def test_a_body_that_breaks_midway_raises_read_error_after_the_chunks() -> None:
    body = Chunks(b"one", error=ConnectionResetError("peer reset"))
    client, _ = build(lambda r: httpx.Response(200, stream=body))
    received: list[bytes] = []

    async def consume(response: httpx.Response) -> None:
        async for part in response.aiter_bytes():
            received.append(part)

    async with client, client.stream("GET", URL) as response:
        with pytest.raises(httpx.ReadError) as raised:
            await consume(response)
    assert received == [b"one"]
    causes = list(chain(raised.value))
    assert isinstance(causes[1], ReadError)
    assert isinstance(causes[2], ConnectionResetError)


async def test_an_httpx_error_from_the_body_passes_through_unchanged() -> None:
    broken = httpx.RemoteProtocolError("incomplete chunked read")
    client, _ = build(lambda r: httpx.Response(200, stream=Chunks(b"x", error=broken)))
    async with client, client.stream("GET", URL) as response:
        with pytest.raises(httpx.RemoteProtocolError) as raised:
            await response.aread()
    assert raised.value is broken


async def test_a_non_streaming_read_of_a_streamed_body_gets_it_all() -> None:
    client, _ = build(lambda r: httpx.Response(200, stream=Chunks(b'{"a"', b": 1}")))
    async with client:
        response = await client.get(URL)
    assert response.json() == {"a": 1}


def gzip_transport() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-encoding": "gzip"}, content=gzip.compress(b"hello " * 100)
        )

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "read-by-the-chain"])
async def test_a_compressed_body_is_decoded_exactly_once(stream: bool) -> None:
    pipeline = Pipeline([], HttpxTerminal(transport=gzip_transport()))
    async with httpx.AsyncClient(transport=pipeline.as_httpx_transport(stream=stream)) as client:
        response = await client.get(URL)
    assert response.text == "hello " * 100
    if not stream:  # the chain decoded it: the caller's copy says so
        assert "content-encoding" not in response.headers
        assert response.headers["content-length"] == str(len(b"hello " * 100))


# -- idempotency keys ---------------------------------------------------------------------------


async def test_without_idempotency_keys_a_post_is_not_retried_after_a_503() -> None:
    clock = FakeClock()
    terminal = MockTerminal.sequence([httpx.Response(503), httpx.Response(200, json={})])
    client, _ = build(terminal, Retry(sleep=clock.sleep, clock=clock), idempotency_keys=False)
    async with client:
        response = await client.post(URL, json={})
    assert response.status_code == 503
    assert len(terminal.requests) == 1
    assert IDEMPOTENCY_HEADER not in terminal.requests[0].headers


# A 503, not a 429: a 429 is retried for a POST without a key too (it was refused unprocessed).
@pytest.mark.parametrize("options", [{}, {"idempotency_keys": True}], ids=["default", "on"])
async def test_idempotency_keys_make_a_post_retryable_after_a_503_with_one_key_for_every_attempt(
    options: dict[str, object],
) -> None:
    clock = FakeClock()
    terminal = MockTerminal.sequence([httpx.Response(503), httpx.Response(200, json={})])
    client, _ = build(terminal, Retry(sleep=clock.sleep, clock=clock), **options)
    async with client:
        response = await client.post(URL, json={"a": 1})
    assert response.status_code == 200
    assert len(terminal.requests) == 2
    first, second = (r.headers[IDEMPOTENCY_HEADER] for r in terminal.requests)
    assert first == second
    assert first.startswith("httprail-")


async def test_a_429_on_a_post_is_retried_even_without_idempotency_keys() -> None:
    clock = FakeClock()
    terminal = MockTerminal.sequence([httpx.Response(429), httpx.Response(200, json={})])
    client, _ = build(terminal, Retry(sleep=clock.sleep, clock=clock), idempotency_keys=False)
    async with client:
        response = await client.post(URL, json={})
    assert response.status_code == 200
    assert len(terminal.requests) == 2


@pytest.mark.parametrize("status", [409, 501, 529])
async def test_the_statuses_the_sdks_retry_are_retried_for_the_transports_requests(
    status: int,
) -> None:
    clock = FakeClock()
    terminal = MockTerminal.sequence([httpx.Response(status), httpx.Response(200, json={})])
    client, _ = build(terminal, Retry(sleep=clock.sleep, clock=clock, retry_statuses={503}))
    async with client:
        response = await client.post(URL, json={})
    assert response.status_code == 200
    assert len(terminal.requests) == 2
    assert {408, 409, 429, 500, 503, 529} <= SDK_RETRY_STATUSES


async def test_retry_statuses_empty_leaves_the_chains_own_statuses() -> None:
    clock = FakeClock()
    terminal = MockTerminal.sequence([httpx.Response(409), httpx.Response(200, json={})])
    client, _ = build(terminal, Retry(sleep=clock.sleep, clock=clock), retry_statuses=())
    async with client:
        response = await client.post(URL, json={})
    assert response.status_code == 409
    assert len(terminal.requests) == 1


@pytest.mark.parametrize("bad", ["429", [429, 600], [True], 429])
def test_bad_retry_statuses_are_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"retry_statuses"):
        Pipeline([], MockTerminal(lambda r: httpx.Response(200))).as_httpx_transport(
            retry_statuses=bad  # type: ignore[arg-type]
        )


async def test_idempotency_keys_skip_repeatable_methods_and_keep_a_given_key() -> None:
    client, terminal = build(lambda r: httpx.Response(200), idempotency_keys=True)
    async with client:
        await client.get(URL)
        await client.put(URL, json={})
        await client.post(URL, json={}, headers={IDEMPOTENCY_HEADER: "mine"})
        await client.patch(URL, json={})
        await client.post(URL, json={})
    keys = [r.headers.get(IDEMPOTENCY_HEADER) for r in terminal.requests]
    assert keys[:3] == [None, None, "mine"]
    assert None not in keys[3:]
    assert keys[3] != keys[4]


# -- lifetime ------------------------------------------------------------------------------------


async def test_closing_the_callers_client_closes_the_pipeline_once() -> None:
    client, terminal = build(lambda r: httpx.Response(200))
    transport = client._transport
    assert isinstance(transport, PipelineTransport)
    async with client:
        await client.get(URL)
    assert terminal.closed
    terminal.closed = False
    await transport.aclose()
    assert not terminal.closed  # idempotent: the pipeline is closed once
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", URL))


async def test_cancellation_propagates_and_is_not_a_failure() -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")  # pragma: no cover

    client, _ = build(hang)
    async with client:
        task = asyncio.create_task(client.get(URL))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_repr_and_pipeline() -> None:
    pipeline = Pipeline([], MockTerminal(lambda r: httpx.Response(200)))
    transport = pipeline.as_httpx_transport()
    assert transport.pipeline is pipeline
    assert repr(transport) == "PipelineTransport(Pipeline(mock))"


async def test_an_async_client_lends_its_chain_and_context() -> None:
    seen: list[RequestContext] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(get_context(request))
        return httpx.Response(404, text="nope")

    terminal = MockTerminal(handler)
    client = AsyncClient("https://ignored.test", plugins=[], terminal=terminal, provider="p")
    transport = client.as_httpx_transport(stream=False)
    assert transport.pipeline is client.pipeline
    async with httpx.AsyncClient(transport=transport) as sdk_client:
        response = await sdk_client.get(URL)
    assert (response.status_code, response.text) == (404, "nope")
    assert str(terminal.requests[0].url) == URL  # the client's base URL is not applied
    assert (seen[0].provider, seen[0].stream) == ("p", False)
    assert terminal.closed  # one pipeline: closing the transport closed the client's chain


async def test_a_chain_that_still_fails_outright_is_never_a_response() -> None:
    outcome_error = ConnectError("refused")
    client, _ = build(lambda r: Failure(outcome_error))
    async with client:
        with pytest.raises(httpx.ConnectError):
            await client.get(URL)
