"""AsyncClient: httpx's request API with Results; requests are built as httpx would build them."""

from __future__ import annotations

import asyncio
import inspect
import typing
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

from httprail import (
    AsyncClient,
    ClientStatusError,
    ConfigError,
    DecodeError,
    Failure,
    HttpSettings,
    InvalidRequestError,
    MaxRetriesExceededError,
    RequestContext,
    StatusError,
    Success,
    get_context,
)
from httprail._cache import CACHE_SIZE
from httprail._client import ClientOptions
from httprail.middleware import CircuitBreaker, Logging, Metrics, Retry, Timeout
from httprail.terminals import AiohttpTerminal, HttpxTerminal
from httprail.testing import FakeClock, MockTerminal


class User(BaseModel):
    id: int
    name: str


def echo_terminal() -> MockTerminal:
    return MockTerminal(
        lambda request: httpx.Response(
            200,
            json={
                "method": request.method,
                "url": str(request.url),
                "headers": dict(request.headers),
                "body": request.content.decode(),
            },
        )
    )


async def call(client: AsyncClient, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    outcome = await client.request(method, url, **kwargs)
    data: dict[str, Any] = outcome.unwrap().json()
    return data


@pytest.mark.parametrize(
    ("base", "url", "expected"),
    [
        ("https://api.test", "/users/1", "https://api.test/users/1"),
        ("https://api.test/v1", "/users/1", "https://api.test/v1/users/1"),
        ("https://api.test/v1/", "users/1", "https://api.test/v1/users/1"),
        ("https://api.test/v1", "https://other.test/x", "https://other.test/x"),
    ],
)
async def test_base_url_merges_like_httpx(base: str, url: str, expected: str) -> None:
    async with AsyncClient(base, plugins=[], terminal=echo_terminal()) as client:
        assert (await call(client, "GET", url))["url"] == expected


async def test_headers_params_and_json_are_sent() -> None:
    async with AsyncClient(
        "https://api.test",
        headers={"X-Team": "a"},
        params={"v": "1"},
        plugins=[],
        terminal=echo_terminal(),
    ) as client:
        data = await call(
            client, "POST", "/items", params={"q": "x"}, headers={"X-Req": "b"}, json={"k": 1}
        )
    assert data["url"] == "https://api.test/items?v=1&q=x"
    assert data["headers"]["x-team"] == "a"
    assert data["headers"]["x-req"] == "b"
    assert data["headers"]["user-agent"].startswith("httprail/")
    assert data["headers"]["content-type"] == "application/json"
    assert data["body"] == '{"k":1}'


@pytest.mark.parametrize(
    "params",
    [
        [("a", "1"), ("a", "2")],
        "a=1&a=2",
        b"a=1&a=2",
        httpx.QueryParams("a=1&a=2"),
        {"a": ["1", "2"]},
    ],
)
async def test_params_in_any_form_httpx_takes_keep_repeated_keys(params: Any) -> None:
    """Pairs, a query string, ``QueryParams`` or a list value: every value is sent (a list of
    pairs was refused as "not a mapping"; ``QueryParams("a=1&a=2")`` lost ``a=2``). They are
    added to the URL's own query and to the client's, a key given later replacing earlier
    values (httpx 0.28 drops the URL's query instead: docs/quickstart.md)."""
    async with AsyncClient(
        "https://api.test", params=[("k", "1"), ("k", "2")], plugins=[], terminal=echo_terminal()
    ) as client:
        data = await call(client, "GET", "/p?u=0&a=0", params=params)
        replaced = await call(client, "GET", "/p", params={"k": "9"})
    assert data["url"] == "https://api.test/p?u=0&a=1&a=2&k=1&k=2"
    assert replaced["url"] == "https://api.test/p?k=9"


@pytest.mark.parametrize("params", [5, [1, 2], object()])
async def test_params_httpx_cannot_read_are_a_typed_failure(params: Any) -> None:
    async with AsyncClient("https://api.test", plugins=[], terminal=echo_terminal()) as client:
        outcome = await client.get("/p", params=params)
    assert isinstance(outcome.failure(), InvalidRequestError)


@pytest.mark.parametrize("method", ["get", "head", "options", "delete", "post", "put", "patch"])
async def test_every_verb_sends_its_method(method: str) -> None:
    terminal = echo_terminal()
    async with AsyncClient("https://api.test", plugins=[], terminal=terminal) as client:
        outcome = await getattr(client, method)("/x")
    assert isinstance(outcome, Success)
    assert terminal.requests[0].method == method.upper()


def test_the_default_terminal_is_aiohttp() -> None:
    client = AsyncClient("https://api.test")
    assert isinstance(client.pipeline.terminal, AiohttpTerminal)


def test_client_options_are_exactly_the_async_clients_keyword_arguments() -> None:
    """``ClientOptions`` (what the sync ``Client`` takes after ``base_url``) names every
    keyword argument of ``AsyncClient`` with the same type, and nothing else."""
    hints = typing.get_type_hints(AsyncClient.__init__)
    parameters = inspect.signature(AsyncClient).parameters.values()
    keywords = {p.name: hints[p.name] for p in parameters if p.kind is p.KEYWORD_ONLY}
    assert typing.get_type_hints(ClientOptions) == keywords


@respx.mock
async def test_default_stack_over_the_httpx_terminal_with_respx() -> None:
    route = respx.get("https://api.test/users/1").mock(
        return_value=httpx.Response(200, json={"id": 1, "name": "a"})
    )
    settings = HttpSettings(http2=False)
    terminal = HttpxTerminal(settings)
    async with AsyncClient("https://api.test", settings=settings, terminal=terminal) as client:
        user = await client.get_json("/users/1", model=User)
    assert user == Success(User(id=1, name="a"))
    assert route.call_count == 1


async def test_get_json_without_model_returns_data() -> None:
    async with AsyncClient("https://api.test", plugins=[], terminal=echo_terminal()) as client:
        data = await client.get_json("/x")
    assert data.unwrap()["method"] == "GET"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [(b"not json", "not valid JSON"), (b'{"id": "x"}', "does not fit User")],
)
async def test_get_json_decode_errors(body: bytes, fragment: str) -> None:
    terminal = MockTerminal(lambda request: httpx.Response(200, content=body))
    async with AsyncClient("https://api.test", plugins=[], terminal=terminal) as client:
        outcome = await client.get_json("/users/1", model=User)
    error = outcome.failure()
    assert isinstance(error, DecodeError)
    assert fragment in str(error)
    assert error.request is not None


async def test_get_json_passes_request_failures_through() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(404))
    async with AsyncClient("https://api.test", plugins=[], terminal=terminal) as client:
        outcome = await client.get_json("/users/1", model=User)
    match outcome:
        case Failure(StatusError(status_code=404)):
            pass
        case _:
            pytest.fail(str(outcome))


@pytest.mark.parametrize("url", ["http://[::1", "ftp://x.test/file", "http://exa mple.com"])
async def test_unbuildable_requests_are_invalid_request_failures(url: str) -> None:
    terminal = echo_terminal()
    async with AsyncClient(plugins=[], terminal=terminal) as client:
        outcome = await client.get(url)
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), InvalidRequestError)


class _FutureStage:
    """A stage whose ``__call__`` returns a Future, not a coroutine (allowed: it is awaitable)."""

    name = "future_stage"

    def __call__(self, request: httpx.Request, call_next: Any) -> asyncio.Future[Any]:
        return asyncio.ensure_future(call_next(request))


@pytest.mark.parametrize(
    ("plugins", "url"),
    [
        ([], "/ok"),  # the terminal's coroutine
        ([Logging(), Retry()], "/ok"),  # the first stage's coroutine
        ([_FutureStage()], "/ok"),  # a stage returning another awaitable, wrapped
        ([], "ftp://x.test/file"),  # a request that cannot be built
    ],
)
async def test_every_call_returns_a_coroutine_tasks_can_run(plugins: list[Any], url: str) -> None:
    async with AsyncClient("https://api.test", plugins=plugins, terminal=echo_terminal()) as client:
        for call_one in (client.get, client.post, client.delete):
            pending = call_one(url)
            assert inspect.iscoroutine(pending)
            outcome = await asyncio.create_task(pending)
            if url == "/ok":
                assert outcome.unwrap().status_code == 200
            else:
                assert isinstance(outcome.failure(), InvalidRequestError)


async def test_bad_timeout_argument_is_an_invalid_request_failure() -> None:
    async with AsyncClient("https://api.test", plugins=[], terminal=echo_terminal()) as client:
        outcome = await client.get("/x", timeout="soon")
    assert isinstance(outcome.failure(), InvalidRequestError)


async def test_per_request_timeout_reaches_the_request() -> None:
    terminal = echo_terminal()
    async with AsyncClient("https://api.test", plugins=[], terminal=terminal) as client:
        await client.get("/x", timeout=2.5)
    assert terminal.requests[0].extensions["timeout"]["read"] == 2.5


async def test_extensions_reach_the_request_but_not_over_the_context() -> None:
    terminal = echo_terminal()
    async with AsyncClient("https://api.test", plugins=[], terminal=terminal) as client:
        await client.get("/x", extensions={"my.flag": 1, "httprail": "ignored"})
    sent = terminal.requests[0]
    assert sent.extensions["my.flag"] == 1
    assert isinstance(sent.extensions["httprail"], RequestContext)


@pytest.mark.parametrize("base", ["not a url", "/relative", "http://[::1"])
def test_bad_base_url_is_a_config_error(base: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        AsyncClient(base, plugins=[], terminal=echo_terminal())


def test_bad_headers_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="headers"):
        AsyncClient(headers={"X": 1}, plugins=[], terminal=echo_terminal())  # type: ignore[dict-item]


async def test_raw_status_and_tags_reach_the_context() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(404))
    async with AsyncClient(
        "https://api.test", plugins=[], terminal=terminal, provider="p"
    ) as client:
        outcome = await client.get("/x", raw_status=True, tags={"team": "a"})
    assert outcome.unwrap().status_code == 404
    ctx = get_context(terminal.requests[0])
    assert (ctx.raw_status, dict(ctx.tags), ctx.provider) == (True, {"team": "a"}, "p")


async def test_client_level_raw_status() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(500))
    async with AsyncClient(
        "https://api.test", plugins=[], terminal=terminal, raw_status=True
    ) as client:
        assert (await client.get("/x")).unwrap().status_code == 500


async def test_stream_yields_an_unread_response_and_closes_it() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(200, content=b"line1\nline2\n"))
    async with AsyncClient("https://api.test", plugins=[], terminal=terminal) as client:
        async with client.stream("GET", "/events") as outcome:
            response = outcome.unwrap()
            assert get_context(response.request).stream
            lines = [line async for line in response.aiter_lines()]
        assert response.is_closed
    assert lines == ["line1", "line2"]


async def test_stream_failure_is_yielded() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(403))
    async with AsyncClient("https://api.test", plugins=[], terminal=terminal) as client:
        async with client.stream("GET", "/events") as outcome:
            assert isinstance(outcome.failure(), ClientStatusError)
        async with client.stream("GET", "http://[::1") as outcome:
            assert isinstance(outcome.failure(), InvalidRequestError)


async def test_send_accepts_a_prebuilt_request() -> None:
    terminal = echo_terminal()
    async with AsyncClient(plugins=[], terminal=terminal) as client:
        outcome = await client.send(httpx.Request("GET", "https://api.test/raw"))
    assert outcome.unwrap().status_code == 200
    assert get_context(terminal.requests[0]).attempt == 1


def test_default_stack_order_and_settings() -> None:
    settings = HttpSettings(timeout_total=9, timeout_attempt=2, max_retries=1)
    client = AsyncClient(settings=settings, terminal=echo_terminal())
    kinds = [type(p) for p in client.pipeline.plugins]
    assert kinds == [Logging, Metrics, Timeout, Retry, CircuitBreaker, Timeout]
    total, attempt = client.pipeline.plugins[2], client.pipeline.plugins[5]
    assert isinstance(total, Timeout)
    assert isinstance(attempt, Timeout)
    assert (total.phase, total.seconds, attempt.phase, attempt.seconds) == (
        "total",
        9,
        "attempt",
        2,
    )
    assert "AsyncClient" in repr(client)


async def test_metrics_snapshot_counts_requests() -> None:
    terminal = MockTerminal.sequence([httpx.Response(200), httpx.Response(404)])
    async with AsyncClient("https://api.test", plugins=[Metrics()], terminal=terminal) as client:
        await client.get("/a")
        await client.get("/b")
        snapshot = client.metrics()
    figures = snapshot["https://api.test"]
    assert (figures.requests, figures.successes) == (2, 1)
    assert dict(figures.failures) == {"ClientStatusError": 1}
    assert dict(figures.statuses) == {200: 1, 404: 1}


async def test_metrics_is_empty_without_a_metrics_stage() -> None:
    async with AsyncClient(plugins=[], terminal=echo_terminal()) as client:
        assert dict(client.metrics()) == {}


def test_string_urls_are_merged_once_and_the_cache_stays_bounded() -> None:
    client = AsyncClient("http://api.test/v1/", plugins=[])
    first = client.build_request("GET", "items").unwrap()
    again = client.build_request("GET", "items", params={"page": 2}).unwrap()
    assert str(first.url) == "http://api.test/v1/items"
    assert str(again.url) == "http://api.test/v1/items?page=2"  # params never reach the cache
    assert str(client.build_request("GET", "items").unwrap().url) == "http://api.test/v1/items"
    assert str(client.build_request("GET", httpx.URL("other")).unwrap().url).endswith("/other")
    for n in range(CACHE_SIZE + 100):
        assert client.build_request("GET", f"/n/{n}").unwrap().url.path == f"/v1/n/{n}"
    assert len(client._url_cache) <= CACHE_SIZE


@pytest.mark.parametrize("method", ["GET", "get", "HEAD", "OPTIONS", "DELETE", "POST", "PATCH"])
@pytest.mark.parametrize(
    ("url", "params", "headers"),
    [
        ("/a", None, None),
        ("http://[::1]:8080/v?x=1", {"y": "2"}, None),
        ("https://user:pw@example.com/p", None, [("X-A", "1"), ("x-a", "2")]),
        ("/a", None, {"Host": "other.test", "Accept": "text/plain"}),
        ("http://example.com:80/ä b", {"q": "é"}, {"User-Agent": "mine"}),
    ],
)
async def test_requests_without_a_body_are_built_as_httpx_builds_them(
    method: str, url: str, params: dict[str, str] | None, headers: Any
) -> None:
    """build_request skips httpx's body encoder when there is no body; the result is the same."""
    client = AsyncClient(
        "https://api.test/base/", headers={"X-Client": "c"}, terminal=echo_terminal()
    )
    built = client.build_request(method, url, params=params, headers=headers).unwrap()
    merged = client._headers.copy()  # the client's headers, then the call's
    if headers:
        merged.update(httpx.Headers(headers))
    full, _problem = client._url_for(url)  # (base-URL merging has its own test)
    if params:
        full = full.copy_merge_params(params)
    reference = httpx.Request(method, full, headers=merged)
    assert (built.method, built.url) == (reference.method, reference.url)
    assert built.headers.raw == reference.headers.raw
    assert built.content == reference.content == b""
    await client.aclose()


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "DELETE"])
@pytest.mark.parametrize("url", ["/a", "http://[::1]:8080/v?x=1", "https://user:pw@example.com/p"])
async def test_a_request_sent_again_without_options_is_the_one_build_request_builds(
    method: str, url: str
) -> None:
    """The quick path of a repeated option-free call builds the request _build builds."""
    terminal = MockTerminal(lambda request: httpx.Response(200))
    client = AsyncClient(
        "https://api.test/base/", headers={"X-Client": "c"}, plugins=[], terminal=terminal
    )
    for _ in range(3):
        assert isinstance(await client.request(method, url), Success)
    first, _second, again = terminal.requests
    assert client._again[url] is not None  # kept when the URL came back: the third was quick
    reference = client.build_request(method, url).unwrap()
    for request in (first, again):
        assert (request.method, request.url, request.headers.raw, request.content) == (
            reference.method,
            reference.url,
            reference.headers.raw,
            b"",
        )
        assert request.extensions == reference.extensions
    again.headers["Authorization"] = "Bearer x"  # each request has headers of its own
    assert "authorization" not in client._headers
    assert "authorization" not in client.build_request(method, url).unwrap().headers
    await client.aclose()


async def test_a_call_with_its_own_params_or_headers_is_not_sent_again_by_the_quick_path() -> None:
    """Per-call params and headers never become what the URL alone is sent with later."""
    terminal = MockTerminal(lambda request: httpx.Response(200))
    client = AsyncClient("https://api.test/", terminal=terminal, params={"k": "1"})
    await client.get("/p")
    assert client._again == {}  # the client's own params: never the quick path
    plain = AsyncClient("https://api.test/", terminal=terminal)
    await plain.get("/q", params={"page": "2"})
    await plain.get("/r", headers={"X-A": "1"})
    assert plain._again == {}
    for _ in range(3):
        await plain.get("/q")
    assert plain._again["/q"] is not None
    assert str(terminal.requests[-1].url) == "https://api.test/q"
    assert "x-a" not in terminal.requests[-1].headers
    for n in range(CACHE_SIZE + 100):
        await plain.get(f"/n/{n}")
    assert len(plain._again) <= CACHE_SIZE
    await client.aclose()
    await plain.aclose()


async def test_a_request_sent_twice_is_two_calls_with_their_own_retries_and_deadline() -> None:
    """The stages leave the last attempt and the total deadline in the request's context: a
    second send of the same request took them for its own (no retry left, or the old deadline
    already passed, so nothing was sent)."""
    clock = FakeClock()
    terminal = MockTerminal(lambda request: httpx.Response(503))
    stages = [
        Timeout(30, phase="total", clock=clock),
        Retry(max_retries=2, clock=clock, sleep=clock.sleep),
    ]
    async with AsyncClient("https://api.test", plugins=stages, terminal=terminal) as client:
        request = client.build_request("GET", "/items").unwrap()
        first = await client.send(request)
        clock.advance(60)  # past the first call's deadline
        second = await client.send(request)
    assert isinstance(first.failure(), MaxRetriesExceededError)
    assert isinstance(second.failure(), MaxRetriesExceededError)
    assert len(terminal.requests) == 6


@pytest.mark.parametrize("auth", [("ann", "pw-s3cret"), httpx.BasicAuth("ann", "pw-s3cret")])
async def test_a_calls_auth_pair_sends_basic_credentials_as_httpx_does(auth: Any) -> None:
    """httpx's per-call ``auth=`` (it raised TypeError): Basic credentials, an explicit
    ``Authorization`` header winning."""
    terminal = echo_terminal()
    async with AsyncClient("https://api.test", plugins=[], terminal=terminal) as client:
        assert isinstance(await client.get("/a", auth=auth), Success)
        await client.get("/b", auth=auth, headers={"Authorization": "Bearer mine"})
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as plain:
        expected = (await plain.get("https://x/a", auth=("ann", "pw-s3cret"))).request
    assert terminal.requests[0].headers["authorization"] == expected.headers["authorization"]
    assert terminal.requests[1].headers["authorization"] == "Bearer mine"


@pytest.mark.parametrize("auth", [httpx.DigestAuth("a", "b"), ("a",), ("a", 1), "ann:pw"])
async def test_a_calls_auth_httprail_cannot_send_is_a_typed_failure(auth: Any) -> None:
    terminal = echo_terminal()
    async with AsyncClient("https://api.test", plugins=[], terminal=terminal) as client:
        outcome = await client.get("/a", auth=auth)
    assert isinstance(outcome.failure(), InvalidRequestError)
    assert "auth=" in str(outcome.failure())
    assert terminal.requests == []


async def test_follow_redirects_per_call() -> None:
    """``follow_redirects=False`` returns the redirect where the stack follows them; ``True``
    without a Redirects stage is refused by name (both raised TypeError)."""
    terminal = MockTerminal(
        lambda r: (
            httpx.Response(302, headers={"location": "/b"})
            if r.url.path == "/a"
            else httpx.Response(200)
        )
    )
    settings = HttpSettings(follow_redirects=True)
    async with AsyncClient("https://api.test", terminal=terminal, settings=settings) as client:
        followed = await client.get("/a")
        kept = await client.get("/a", follow_redirects=False)
    assert followed.unwrap().status_code == 200
    assert kept.unwrap().status_code == 302
    async with AsyncClient("https://api.test", plugins=[], terminal=echo_terminal()) as client:
        refused = await client.get("/a", follow_redirects=True)
        fine = await client.get("/a", follow_redirects=False)
        odd = await client.get("/a", follow_redirects="yes")  # type: ignore[arg-type]
    assert "no Redirects stage" in str(refused.failure())
    assert isinstance(fine, Success)
    assert isinstance(odd.failure(), InvalidRequestError)
