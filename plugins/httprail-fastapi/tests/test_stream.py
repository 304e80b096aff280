"""The streaming proxy: bodies and events handed on, failures before and during the body, and
the upstream closed as soon as the downstream client disconnects (TestClient, and uvicorn on
127.0.0.1 for the disconnects, which TestClient cannot make)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from httprail import AsyncClient, Failure, ReadError, RequestError, Result, Success
from httprail.generators import GenerationStream
from httprail.middleware import Retry
from httprail.testing import ChaosServer, Fault, Reply

from httprail_fastapi import (
    client_dep,
    httprail_lifespan,
    proxy_stream,
    sse_response,
    stream_response,
)


def proxy_app(upstream: str) -> FastAPI:
    """An app whose /proxy streams GET ``upstream`` through a client without retries."""
    client = AsyncClient(plugins=[Retry(max_retries=0)])
    app = FastAPI(lifespan=httprail_lifespan(clients={"upstream": client}))

    @app.get("/proxy")
    async def proxy(http: Annotated[AsyncClient, Depends(client_dep("upstream"))]) -> Any:
        return await proxy_stream(http, "GET", upstream)

    return app


def test_an_event_stream_is_handed_on_with_its_status_and_headers(
    chaos_server: ChaosServer,
) -> None:
    """proxy_stream relays the upstream's events, status and content type, and no cookie."""
    chaos_server.script(
        "/events",
        Reply(
            status_code=200,
            headers=(("content-type", "text/event-stream"), ("set-cookie", "s=1")),
            events=("one", "two"),
        ),
    )
    with TestClient(proxy_app(chaos_server.url_for("/events"))) as http:
        answer = http.get("/proxy")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/event-stream"
    assert answer.headers["cache-control"] == "no-cache"
    assert "set-cookie" not in answer.headers
    assert answer.text == "data: one\n\ndata: two\n\n"


def test_an_upstream_failure_before_the_body_is_a_mapped_status(
    chaos_server: ChaosServer,
) -> None:
    """A 503 answer to the stream's request is a 502 with a JSON body: nothing was streamed."""
    chaos_server.script("/events", Reply.status(503))
    with TestClient(proxy_app(chaos_server.url_for("/events"))) as http:
        answer = http.get("/proxy")
    assert answer.status_code == 502
    assert answer.json()["error"] == "ServerStatusError"


def test_an_event_stream_broken_mid_body_ends_with_an_error_event(
    chaos_server: ChaosServer,
) -> None:
    """The upstream drops after two events: the client gets them, then one error event."""
    chaos_server.script("/events", Reply.sse(["a", "b", "c"], drop_after=2))
    with TestClient(proxy_app(chaos_server.url_for("/events"))) as http:
        answer = http.get("/proxy")
    events = answer.text.split("\n\n")
    assert events[:2] == ["data: a", "data: b"]
    assert events[2].startswith("event: error\ndata: {")
    assert '"message": "the upstream stream broke"' in events[2]


def test_another_body_broken_mid_way_is_cut_not_completed(chaos_server: ChaosServer) -> None:
    """A plain body that breaks mid-way is not ended cleanly: the app raises, so the server
    aborts the response and the client cannot take the part for the whole."""
    chaos_server.script("/file", Reply.fail(Fault.TRUNCATE))
    app = proxy_app(chaos_server.url_for("/file"))
    with TestClient(app) as http, pytest.raises(httpx.TransportError):
        http.get("/proxy")


def test_stream_response_refuses_what_is_not_a_result() -> None:
    """stream_response() of a bare response is a TypeError naming its type."""
    with pytest.raises(TypeError, match="Response"):
        stream_response(httpx.Response(200))  # type: ignore[arg-type]


def test_generation_stream_pieces_become_events_and_a_failure_the_last_one() -> None:
    """sse_response: one data event per piece (lines split), then an error event for the
    Failure, and the stream is closed."""

    async def pieces() -> AsyncIterator[Result[str, RequestError]]:
        yield Success("Hel")
        yield Success("lo\nworld")
        yield Failure(ReadError("provider went away"))

    stream = GenerationStream(pieces)
    app = FastAPI()

    @app.get("/chat")
    async def chat() -> Any:
        return sse_response(stream)

    with TestClient(app) as http:
        answer = http.get("/chat")
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.text == (
        "data: Hel\n\ndata: lo\ndata: world\n\n"
        'event: error\ndata: {"error": "ReadError", "message": "provider went away"}\n\n'
    )
    assert stream.done


def test_returning_a_client_stream_context_the_natural_way_fails_with_stream_closed(
    chaos_server: ChaosServer,
) -> None:
    """Why the helper exists: StreamingResponse over a response from ``async with
    client.stream()`` reads a stream the context already closed (httpx.StreamClosed)."""
    chaos_server.script("/events", Reply.sse(["a"]))
    app = FastAPI()

    @app.get("/natural")
    async def natural() -> Any:
        async with (
            AsyncClient() as client,
            client.stream("GET", chaos_server.url_for("/events")) as outcome,
        ):
            return StreamingResponse(outcome.unwrap().aiter_bytes())

    with TestClient(app) as http, pytest.raises(httpx.StreamClosed):
        http.get("/natural")


# -- a real server: the downstream client goes away -------------------------------------------


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start apps under uvicorn on 127.0.0.1 (in a thread); each is stopped after the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: FastAPI) -> int:
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        servers.append((server, thread))
        port: int = server.servers[0].sockets[0].getsockname()[1]
        return port

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def read_then_leave(port: int, path: str, until: bytes) -> float:
    """GET ``path``, read until ``until`` arrives, close the socket; returns when it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        received = b""
        while until not in received:
            chunk = sock.recv(65536)
            assert chunk, f"closed before {until!r}: {received!r}"
            received += chunk
    return time.monotonic()  # the socket is closed


def wait_for(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while (value := check()) is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)
    return value


def test_a_client_leaving_mid_stream_closes_the_upstream_stream_within_100_ms(
    chaos_server: ChaosServer, serve: Any
) -> None:
    """The downstream client closes its socket after the first event of a slow stream (one
    event a second): the upstream connection is closed within 100 ms, measured by the
    upstream server."""
    chaos_server.script("/events", Reply.sse(["first", "second", "third"], event_delay=1.0))
    port = serve(proxy_app(chaos_server.url_for("/events")))
    left = read_then_leave(port, "/proxy", b"data: first")
    (request,) = chaos_server.requests_for("/events")
    closed = wait_for(lambda: chaos_server.closed_at(request.connection_id))
    print(f"upstream closed {1000 * (closed - left):.1f} ms after the client left")
    assert closed - left < 0.1


def test_a_client_leaving_an_sse_response_closes_the_generation_stream(serve: Any) -> None:
    """sse_response closes its source (the producer's finally runs) when the client leaves."""
    finished: list[float] = []

    async def pieces() -> AsyncIterator[Result[str, RequestError]]:
        try:
            yield Success("first")
            await asyncio.sleep(3600)
            yield Success("never")
        finally:
            finished.append(time.monotonic())

    app = FastAPI()

    @app.get("/chat")
    async def chat() -> Any:
        return sse_response(GenerationStream(pieces))

    left = read_then_leave(serve(app), "/chat", b"data: first")
    closed = wait_for(lambda: finished[0] if finished else None)
    assert closed - left < 0.1
