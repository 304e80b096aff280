"""respx (and httpx2-pytest) mock the default client: the chain runs, the network is never used.

The host ``api.example.invalid`` cannot resolve: a request that slipped past the mock would
fail with a connect error instead of the mocked answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import openai
import pytest
import respx
from pytest_httpx2 import HTTPXMock
from returns.result import Success

from httprail import AsyncClient, HttpSettings, ServerStatusError
from httprail.terminals._mocked import mocking

from ._terminals import TERMINALS as BY_KIND

BASE = "https://api.example.invalid"

TERMINALS: dict[str, Callable[[HttpSettings], object] | None] = {"default": None, **BY_KIND}


@pytest.fixture(params=sorted(TERMINALS))
async def client(request: pytest.FixtureRequest) -> AsyncIterator[AsyncClient]:
    """The default stack (retry, breaker, ...) over each terminal, built before the mock."""
    settings = HttpSettings(backoff_base=0.01, backoff_max=0.02)
    make = TERMINALS[request.param]
    made = AsyncClient(BASE, settings=settings, terminal=None if make is None else make(settings))
    yield made
    await made.aclose()


async def test_a_respx_route_answers_the_default_client(client: AsyncClient) -> None:
    """Under ``respx.mock`` the route is called and its answer comes back; nothing else is
    sent (assert_all_called, and a host that cannot resolve)."""
    with respx.mock(assert_all_called=True) as mock:
        route = mock.get(f"{BASE}/users/1").respond(json={"id": 1})
        outcome = await client.get_json("/users/1")
    assert outcome == Success({"id": 1})
    assert route.call_count == 1


async def test_the_chain_runs_under_respx_retrying_a_mocked_503(client: AsyncClient) -> None:
    """A mocked 503 then 200 goes through Retry: two calls to the route, one Success."""
    with respx.mock() as mock:
        route = mock.get(f"{BASE}/flaky")
        route.side_effect = [httpx.Response(503), httpx.Response(200, json={"ok": True})]
        outcome = await client.get_json("/flaky")
    assert outcome == Success({"ok": True})
    assert route.call_count == 2


async def test_a_request_no_route_matches_fails_loudly(client: AsyncClient) -> None:
    """An unmatched request raises respx's assertion to the test (not a retried Failure, not
    a network call), and the route it did not match saw no call."""
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/known").respond(200)
        with pytest.raises(AssertionError, match="not mocked"):
            await client.get("/unknown")
        assert len(mock.calls) == 0


async def test_respx_using_httpx_mocks_the_default_client_too() -> None:
    """``respx.mock(using="httpx")`` (it patches httpx.AsyncClient) answers the default client."""
    client = AsyncClient(BASE)
    with respx.mock(using="httpx") as mock:
        mock.post(f"{BASE}/items").respond(201, json={"id": 7})
        outcome = await client.post("/items", json={"name": "x"})
    assert outcome.map(lambda response: response.status_code) == Success(201)
    await client.aclose()


async def test_a_streamed_answer_under_respx_is_read_through_the_chain() -> None:
    """``client.stream`` under respx yields the mocked body, chunk by chunk."""
    client = AsyncClient(BASE)
    with respx.mock() as mock:
        mock.get(f"{BASE}/events").respond(200, content=b"data: 1\n\ndata: 2\n\n")
        async with client.stream("GET", "/events") as streamed:
            response = streamed.unwrap()
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert body == b"data: 1\n\ndata: 2\n\n"
    await client.aclose()


async def test_no_mock_is_seen_once_respx_stops() -> None:
    """Outside ``respx.mock`` the terminals send for real (the detour is off)."""
    with respx.mock():
        assert mocking() == "respx"
    assert mocking() is None


async def test_httpx2_pytest_mocks_the_default_client(httpx2_mock: HTTPXMock) -> None:
    """httpx2-pytest's ``httpx2_mock`` answers the default client, through the chain: a mocked
    500 is retried, then the mocked 200 comes back."""
    httpx2_mock.add_response(url=f"{BASE}/users/2", status_code=500)
    httpx2_mock.add_response(url=f"{BASE}/users/2", json={"id": 2})
    client = AsyncClient(BASE, settings=HttpSettings(backoff_base=0.01, backoff_max=0.02))
    assert mocking() == "httpx2-pytest"
    outcome = await client.get_json("/users/2")
    assert outcome == Success({"id": 2})
    assert len(httpx2_mock.get_requests()) == 2
    await client.aclose()


async def test_httpx2_pytest_error_statuses_keep_their_type(httpx2_mock: HTTPXMock) -> None:
    """A mocked 503 that stays 503 ends as ServerStatusError with its body, as on the wire."""
    httpx2_mock.add_response(url=f"{BASE}/down", status_code=503, text="busy", is_reusable=True)
    client = AsyncClient(BASE, plugins=[])
    outcome = await client.get("/down")
    error = outcome.failure()
    assert isinstance(error, ServerStatusError)
    assert error.response.text == "busy"
    await client.aclose()


COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
}


async def test_an_sdk_over_httprail_under_respx_exercises_the_chain() -> None:
    """openai's own (httpx2) client over ``as_httpx2_transport()``, under ``respx.mock``: the
    SDK's request travels httprail's chain, whose Retry waits out the mocked 429's
    retry-after-ms and gets the completion (the SDK's own retries are off)."""
    client = AsyncClient(settings=HttpSettings(backoff_base=0.01, backoff_max=0.02))
    sdk = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="https://llm.example.invalid/v1",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(transport=client.as_httpx2_transport()),
    )
    with respx.mock() as mock:
        route = mock.post("https://llm.example.invalid/v1/chat/completions")
        route.side_effect = [
            httpx.Response(429, headers={"retry-after-ms": "10"}),
            httpx.Response(200, json=COMPLETION),
        ]
        done = await sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert done.choices[0].message.content == "hi"
    assert route.call_count == 2
    await client.aclose()
