"""iter_sse over a real streamed response from the chaos server: events, breaks, the size cap."""

from __future__ import annotations

from httprail import (
    AsyncClient,
    DecodeError,
    Failure,
    ProtocolError,
    ReadError,
    RequestError,
    Result,
    Success,
)
from httprail.generators import SSEEvent, iter_sse
from httprail.testing import ChaosServer, Reply

from .conftest import ClientFactory


async def read_events(
    client: AsyncClient, path: str, *, method: str = "POST", **kwargs: int
) -> tuple[list[Result[SSEEvent, RequestError]], bool]:
    """Every item iter_sse gives for a request to ``path``, and whether the response was closed."""
    async with client.stream(method, path, json={"stream": True}) as outcome:
        response = outcome.unwrap()
        assert response.headers["content-type"] == "text/event-stream"
        items = [item async for item in iter_sse(response, **kwargs)]
        return items, response.is_closed


async def test_every_event_arrives_in_order_and_the_response_is_closed(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/chat", Reply.sse(["one", "two\nlines", '{"delta": "three"}']))
    items, closed = await read_events(make_client(), "/chat")
    assert items == [
        Success(SSEEvent(data="one")),
        Success(SSEEvent(data="two\nlines")),
        Success(SSEEvent(data='{"delta": "three"}')),
    ]
    assert closed


async def test_a_stream_dropped_after_two_events_gives_them_then_one_failure_and_no_retry(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/chat", Reply.sse(["a", "b", "c", "d"], drop_after=2))
    client = make_client()  # the default stack: Retry would retry a GET that broke in the chain
    items, closed = await read_events(client, "/chat", method="GET")
    assert items[:2] == [Success(SSEEvent(data="a")), Success(SSEEvent(data="b"))]
    assert len(items) == 3
    last = items[2]
    assert isinstance(last, Failure)
    error = last.failure()
    assert isinstance(error, ReadError | ProtocolError)
    assert error.request is not None
    assert error.request.url.path == "/chat"
    assert closed
    assert chaos_server.count("/chat") == 1  # a broken stream is reported, never replayed


async def test_an_event_over_the_cap_is_one_decode_error_after_the_smaller_ones(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/chat", Reply.sse(["small", "x" * 500, "never seen"]))
    items, closed = await read_events(make_client(), "/chat", max_event_bytes=100)
    assert items[0] == Success(SSEEvent(data="small"))
    assert len(items) == 2
    error = items[1].failure()
    assert isinstance(error, DecodeError)
    assert "100-byte cap" in str(error)
    assert closed


async def test_stopping_early_releases_the_connection_for_the_next_request(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/chat", Reply.sse([str(n) for n in range(50)], event_delay=0.01))
    client = make_client()
    async with client.stream("POST", "/chat") as outcome:
        response = outcome.unwrap()
        events = iter_sse(response)
        assert await anext(events) == Success(SSEEvent(data="0"))
        await events.aclose()
        assert response.is_closed
    follow_up = await client.get("/after")
    assert follow_up.unwrap().json() == {"ok": True}
