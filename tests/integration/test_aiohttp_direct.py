"""The aiohttp terminal's short road (``DirectRoad``): taken for plain requests, the same bytes
on the wire and the same answer as aiohttp's session road, and left for the session road
wherever the session would do something the short road does not (real ``ChaosServer``)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from httprail import AsyncClient, Failure, HttpSettings, ReadError, Success
from httprail.terminals import AiohttpTerminal
from httprail.terminals._aiohttp_direct import DirectRoad, plain_url
from httprail.testing import ChaosServer, Reply

SETTINGS = HttpSettings(timeout_read=5.0)


@pytest.fixture
def server() -> Iterator[ChaosServer]:
    with ChaosServer() as chaos:
        chaos.script("/echo", Reply.json({"ok": True}, headers={"X-Answer": "yes"}))
        yield chaos


@pytest.fixture
def session_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``ClientSession.request`` call (the session road), by method. The public method
    is wrapped, not ``_request``: a replaced ``_request`` turns the short road off."""
    calls: list[str] = []
    original = aiohttp.ClientSession.request

    def counting(self: aiohttp.ClientSession, method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        return original(self, method, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "request", counting)
    return calls


async def test_a_plain_request_takes_the_short_road(
    server: ChaosServer, session_calls: list[str]
) -> None:
    terminal = AiohttpTerminal(SETTINGS)
    async with AsyncClient(server.url, terminal=terminal) as client:
        got = await client.get("/echo")
        posted = await client.post("/echo", content=b"hello")
        assert isinstance(terminal._direct, DirectRoad)
    assert isinstance(got, Success)
    assert got.unwrap().json() == {"ok": True}
    assert isinstance(posted, Success)
    assert posted.unwrap().headers["x-answer"] == "yes"
    assert session_calls == []
    assert [(r.method, r.body) for r in server.requests] == [("GET", b""), ("POST", b"hello")]


async def _chunks() -> AsyncIterator[bytes]:
    for piece in (b"one,", b"two,", b"three"):
        yield piece


# Requests as the pipeline hands them to the terminal (some without httpx's defaults), by name.
CASES: dict[str, Callable[[str], httpx.Request]] = {
    "get": lambda url: httpx.Request("GET", url, headers={"Accept": "*/*", "User-Agent": "t"}),
    # no Accept, Accept-Encoding, User-Agent: aiohttp must not add them
    "get-bare": lambda url: httpx.Request("GET", url),
    "head": lambda url: httpx.Request("HEAD", url, headers={"X-Many": "a, b"}),
    "delete": lambda url: httpx.Request("DELETE", url + "?q=1&r=%20"),
    "post": lambda url: httpx.Request(
        "POST", url, content=b'{"a": 1}', headers={"Content-Type": "x/y"}
    ),
    "post-empty": lambda url: httpx.Request("POST", url),
    "put-large": lambda url: httpx.Request("PUT", url, content=b"z" * (1024 * 1024 + 7)),
    "patch-streamed": lambda url: httpx.Request("PATCH", url, content=_chunks()),
    "repeated-header": lambda url: httpx.Request(
        "GET", url, headers=[("X-Rep", "1"), ("X-Rep", "2")]
    ),
}


async def _sent(server: ChaosServer, name: str, short: bool) -> tuple[Any, ...]:
    server.reset()
    server.script("/echo", Reply.json({"ok": True}, headers={"X-Answer": "yes"}))
    terminal = AiohttpTerminal(SETTINGS)
    terminal._short_road = short
    try:
        outcome = await terminal.send(CASES[name](server.url_for("/echo")))
        assert (terminal._direct is not None) is short
    finally:
        await terminal.aclose()
    assert isinstance(outcome, Success), outcome
    response = outcome.unwrap()
    (seen,) = server.requests
    answer = (response.status_code, response.headers.multi_items(), response.content)
    return (seen.method, seen.path, seen.query, seen.headers, seen.body, answer)


@pytest.mark.parametrize("name", CASES)
async def test_both_roads_put_the_same_request_on_the_wire_and_give_the_same_answer(
    server: ChaosServer, name: str, session_calls: list[str]
) -> None:
    short = await _sent(server, name, short=True)
    assert session_calls == []
    long = await _sent(server, name, short=False)
    assert session_calls == [CASES[name]("http://x/").method]
    answer = short[-1]
    assert answer[0] == 200
    assert short[:5] == long[:5]  # method, path, query, headers, body as the server saw them
    # The answer: the same but for its Date header (the two came at different times).
    assert [h for h in answer[1] if h[0] != "date"] == [h for h in long[-1][1] if h[0] != "date"]
    assert answer[2] == long[-1][2]


async def test_a_url_with_userinfo_is_sent_as_basic_auth_without_the_credentials_in_the_url(
    server: ChaosServer, session_calls: list[str]
) -> None:
    """The terminal's gate turns userinfo into ``Authorization: Basic`` before either road
    (``plain_url`` would keep such a URL on the session road, which does the same)."""
    url = server.url.replace("http://", "http://ann:s3cret@") + "/echo"
    terminal = AiohttpTerminal(SETTINGS)
    try:
        outcome = await terminal.send(httpx.Request("GET", url))
    finally:
        await terminal.aclose()
    assert isinstance(outcome, Success)
    assert session_calls == []
    (seen,) = server.requests
    assert seen.header("authorization") == "Basic " + base64.b64encode(b"ann:s3cret").decode()
    assert "s3cret" not in seen.path + seen.header("host")  # type: ignore[operator]


async def test_a_trace_config_added_later_moves_the_next_request_to_the_session_road(
    server: ChaosServer, session_calls: list[str]
) -> None:
    """OpenTelemetry's ``instrument_session`` adds a trace config to a live session: its
    hooks must see every request from then on."""
    started: list[str] = []

    async def on_start(_s: Any, _c: Any, params: aiohttp.TraceRequestStartParams) -> None:
        started.append(params.method)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.freeze()
    terminal = AiohttpTerminal(SETTINGS)
    async with AsyncClient(server.url, terminal=terminal) as client:
        assert isinstance(await client.get("/echo"), Success)
        assert session_calls == []
        terminal.session._trace_configs.append(trace)
        assert isinstance(await client.get("/echo"), Success)
    assert session_calls == ["GET"]
    assert started == ["GET"]
    assert server.count("/echo") == 2


async def test_a_replaced_request_method_is_called_and_nothing_reaches_the_network(
    server: ChaosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What aioresponses and vcrpy do (they replace ``ClientSession._request``): the mock
    answers, whether it was put in place before the session was built or after."""
    mocked: list[str] = []

    async def fake(self: aiohttp.ClientSession, method: str, url: Any, **_: Any) -> Any:
        mocked.append(method)
        raise aiohttp.ClientConnectionError("mocked: no network")

    terminal = AiohttpTerminal(SETTINGS)
    async with AsyncClient(server.url, plugins=[], terminal=terminal) as client:
        assert isinstance(await client.get("/echo"), Success)  # the short road, first
        assert terminal._direct is not None
        monkeypatch.setattr(aiohttp.ClientSession, "_request", fake)
        after = await client.get("/echo")
    fresh = AiohttpTerminal(SETTINGS)  # built while the mock is in place
    async with AsyncClient(server.url, plugins=[], terminal=fresh) as client:
        before = await client.get("/echo")
        assert fresh._direct is None
    assert isinstance(after, Failure)
    assert isinstance(before, Failure)
    assert isinstance(after.failure(), ReadError)
    assert isinstance(before.failure(), ReadError)
    assert "mocked: no network" in str(after.failure())
    assert mocked == ["GET", "GET"]
    assert server.count("/echo") == 1  # only the request before the mock


async def test_the_short_road_is_only_built_for_a_session_it_can_stand_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with aiohttp.ClientSession() as session:
        assert isinstance(DirectRoad.of(aiohttp, session), DirectRoad)
    async with aiohttp.ClientSession(trace_configs=[aiohttp.TraceConfig()]) as session:
        assert DirectRoad.of(aiohttp, session) is None

    async def middleware(request: Any, handler: Any) -> Any:
        return await handler(request)

    async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
        assert DirectRoad.of(aiohttp, session) is None

    with pytest.warns(DeprecationWarning, match="discouraged"):  # some do it all the same

        class Own(aiohttp.ClientSession):
            pass

    async with Own() as session:
        assert DirectRoad.of(aiohttp, session) is None

    class OwnRequest(aiohttp.ClientRequest):
        pass

    async with aiohttp.ClientSession(request_class=OwnRequest) as session:
        assert DirectRoad.of(aiohttp, session) is None
    monkeypatch.setattr(aiohttp, "__version__", "3.15.0")
    async with aiohttp.ClientSession() as session:
        assert DirectRoad.of(aiohttp, session) is None


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("http://h/x", True),
        ("https://h:8443/x?q=1", True),
        ("http://u@h/x", False),
        ("http://u:p@h/x", False),
        ("http://:p@h/x", False),
        ("ftp://h/x", False),
        ("ws://h/x", False),
    ],
)
def test_which_urls_are_plain(url: str, plain: bool) -> None:
    import yarl

    assert plain_url(yarl.URL(url, encoded=True)) is plain


async def test_a_session_closed_under_the_terminal_fails_as_on_the_session_road(
    server: ChaosServer, session_calls: list[str]
) -> None:
    terminal = AiohttpTerminal(SETTINGS)
    async with AsyncClient(server.url, plugins=[], terminal=terminal) as client:
        assert isinstance(await client.get("/echo"), Success)
        await terminal.session.close()
        closed = await client.get("/echo")
    assert isinstance(closed, Failure)
    assert "Session is closed" in str(closed.failure())
    assert session_calls == ["GET"]
    assert server.count("/echo") == 1


@pytest.mark.parametrize(
    "fault",
    [BrokenPipeError(32, "Broken pipe"), TimeoutError(), ConnectionResetError(104, "reset")],
    ids=["os-error", "timeout", "reset"],
)
async def test_a_fault_while_connecting_is_the_same_failure_on_both_roads(
    fault: BaseException,
) -> None:
    """``_request`` wraps a bare ``OSError`` in ``ClientOSError`` and a ``TimeoutError`` in
    ``ConnectionTimeoutError``: the short road does the same, so the caller gets the same."""
    failures = []
    seen: list[str] = []

    async def failing(req: Any, traces: Any, timeout: Any) -> Any:
        seen.append(str(req.url))
        raise fault

    for short in (True, False):
        terminal = AiohttpTerminal(SETTINGS)
        session = terminal.session
        session.connector.connect = failing  # type: ignore[method-assign]
        terminal._direct = DirectRoad.of(aiohttp, session) if short else None
        assert (terminal._direct is not None) is short
        try:
            outcome = await terminal.send(httpx.Request("GET", "http://127.0.0.1:9/x"))
        finally:
            await terminal.aclose()
        assert isinstance(outcome, Failure)
        failures.append((type(outcome.failure()), str(outcome.failure())))
    assert seen == ["http://127.0.0.1:9/x"] * 2
    assert failures[0] == failures[1]
