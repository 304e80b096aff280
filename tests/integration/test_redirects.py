"""Redirects, followed by the ``Redirects`` stage the same way on every terminal, against two
real servers (two origins: 127.0.0.1 on two ports): credentials never cross to another origin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from httprail import (
    AsyncClient,
    HttpSettings,
    InsecureRedirectError,
    Outcome,
    Pipeline,
    Success,
    TooManyRedirectsError,
)
from httprail._pipeline import TerminalPlugin
from httprail._result import Next
from httprail.middleware import ApiKeyAuth, BearerAuth, Redirects, default_plugins
from httprail.terminals import HttpxTerminal
from httprail.testing import ChaosServer, RecordedRequest, Reply

from ._terminals import build

KEY = "k3y-for-origin-a"
TOKEN = "t0ken-for-origin-a"
CREDENTIALS = ("authorization", "proxy-authorization", "cookie", "x-api-key")


@pytest.fixture
async def terminal(kind: str) -> AsyncIterator[TerminalPlugin]:
    built = build(kind, HttpSettings(timeout_connect=2, timeout_read=2))
    yield built
    await built.aclose()


@pytest.fixture
def other_server() -> Iterator[ChaosServer]:
    """A second server beside ``chaos_server``: another origin (same host, another port)."""
    with ChaosServer() as server:
        yield server


def redirect(status: int, location: str) -> Reply:
    return Reply.status(status, headers={"Location": location})


def seen(server: ChaosServer, path: str) -> RecordedRequest:
    [request] = server.requests_for(path)
    return request


def credential_stack(origin: str, *more: object) -> list[Any]:
    return [
        Redirects(),
        *more,
        BearerAuth(TOKEN, origins=origin),
        ApiKeyAuth(KEY, origins=origin),
    ]


async def test_a_same_origin_redirect_keeps_the_credentials(
    chaos_server: ChaosServer, terminal: TerminalPlugin
) -> None:
    """A redirect within the origin is followed with every credential, and the final response
    lists the 302 in its history."""
    chaos_server.script("/old", redirect(302, "/new"))
    chaos_server.script("/new", Reply.json({"ok": True}))
    pipeline = Pipeline(credential_stack(chaos_server.url), terminal)
    request = httpx.Request("GET", chaos_server.url_for("/old"), headers={"Cookie": "s=1"})
    response = (await pipeline.send(request)).unwrap()
    assert response.json() == {"ok": True}
    assert [r.status_code for r in response.history] == [302]
    landed = seen(chaos_server, "/new")
    assert landed.header("authorization") == f"Bearer {TOKEN}"
    assert landed.header("x-api-key") == KEY
    assert landed.header("cookie") == "s=1"


async def test_a_cross_origin_redirect_strips_every_credential(
    chaos_server: ChaosServer, other_server: ChaosServer, terminal: TerminalPlugin
) -> None:
    """A 307 to another origin keeps the method, body and ordinary headers, but the other
    server sees no Authorization, Proxy-Authorization, Cookie or auth-stage header."""
    chaos_server.script("/go", redirect(307, other_server.url_for("/land")))
    other_server.script("/land", Reply.json({"landed": True}))
    pipeline = Pipeline(credential_stack(chaos_server.url), terminal)
    headers = {"Cookie": "s=1", "Proxy-Authorization": "Basic cHJveHk6cHc=", "X-Trace": "abc"}
    request = httpx.Request("PUT", chaos_server.url_for("/go"), headers=headers, content=b"data")
    response = (await pipeline.send(request)).unwrap()
    assert response.json() == {"landed": True}
    first, landed = seen(chaos_server, "/go"), seen(other_server, "/land")
    assert first.header("authorization") == f"Bearer {TOKEN}"
    assert first.header("x-api-key") == KEY
    assert [name for name in CREDENTIALS if landed.header(name) is not None] == []
    assert (landed.method, landed.body, landed.header("x-trace")) == ("PUT", b"data", "abc")
    assert landed.header("host") == f"127.0.0.1:{other_server.port}"


class _PlainOnTheWire:
    """Test stage: send an ``https`` request as ``http`` (as a TLS-terminating proxy would), so
    a plain local server can play an https origin."""

    name = "plain_on_the_wire"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        if request.url.scheme != "https":
            return await call_next(request)
        wire = httpx.Request(
            request.method,
            request.url.copy_with(scheme="http"),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await call_next(wire)


async def test_an_https_to_http_redirect_is_refused(
    chaos_server: ChaosServer, other_server: ChaosServer, terminal: TerminalPlugin
) -> None:
    """An https request redirected to plain http ends with InsecureRedirectError, and the http
    server is never contacted."""
    target = other_server.url_for("/plain")
    chaos_server.script("/secure", redirect(301, target))
    pipeline = Pipeline([Redirects(), _PlainOnTheWire()], terminal)
    https_url = chaos_server.url_for("/secure").replace("http://", "https://")
    outcome = await pipeline.send(httpx.Request("GET", https_url))
    error = outcome.failure()
    assert isinstance(error, InsecureRedirectError)
    assert (error.status_code, error.location) == (301, target)
    assert chaos_server.count("/secure") == 1
    assert other_server.count() == 0


async def test_an_allowed_downgrade_is_followed_without_credentials(
    chaos_server: ChaosServer, terminal: TerminalPlugin
) -> None:
    """With allow_downgrade the https → http hop is followed, as a change of origin: the
    credentials stay behind."""
    chaos_server.script("/secure", redirect(302, chaos_server.url_for("/plain")))
    chaos_server.script("/plain", Reply.json({"plain": True}))
    https_origin = chaos_server.url.replace("http://", "https://")
    stack = [
        Redirects(allow_downgrade=True),
        BearerAuth(TOKEN, origins=https_origin),
        _PlainOnTheWire(),
    ]
    outcome = await Pipeline(stack, terminal).send(httpx.Request("GET", f"{https_origin}/secure"))
    assert outcome.unwrap().json() == {"plain": True}
    assert seen(chaos_server, "/secure").header("authorization") == f"Bearer {TOKEN}"
    assert seen(chaos_server, "/plain").header("authorization") is None


async def test_more_than_max_redirects_is_a_failure(
    chaos_server: ChaosServer, terminal: TerminalPlugin
) -> None:
    """A chain of redirects longer than max_redirects ends with TooManyRedirectsError after
    max_redirects hops."""
    for n in range(10):
        chaos_server.script(f"/hop/{n}", redirect(302, f"/hop/{n + 1}"))
    pipeline = Pipeline([Redirects(max_redirects=3)], terminal)
    outcome = await pipeline.send(httpx.Request("GET", chaos_server.url_for("/hop/0")))
    error = outcome.failure()
    assert isinstance(error, TooManyRedirectsError)
    assert error.redirects == 3
    assert chaos_server.count() == 4  # the request and three hops


async def test_a_redirect_loop_stops_at_once(
    chaos_server: ChaosServer, terminal: TerminalPlugin
) -> None:
    """A redirect back to a URL already sent with the same method is a loop: it ends with
    TooManyRedirectsError without going round again."""
    chaos_server.script("/a", redirect(302, "/b"))
    chaos_server.script("/b", redirect(302, "/a"))
    pipeline = Pipeline([Redirects()], terminal)
    outcome = await pipeline.send(httpx.Request("GET", chaos_server.url_for("/a")))
    error = outcome.failure()
    assert isinstance(error, TooManyRedirectsError)
    assert "loop" in error.message
    assert (chaos_server.count("/a"), chaos_server.count("/b")) == (1, 1)


async def test_a_303_turns_a_post_into_a_get_without_body(
    chaos_server: ChaosServer, terminal: TerminalPlugin
) -> None:
    """After a 303 the next hop is a GET with no body and no body headers."""
    chaos_server.script("/submit", redirect(303, "/result"))
    chaos_server.script("/result", Reply.json({"done": True}))
    request = httpx.Request("POST", chaos_server.url_for("/submit"), json={"a": 1})
    outcome = await Pipeline([Redirects()], terminal).send(request)
    assert outcome.unwrap().json() == {"done": True}
    landed = seen(chaos_server, "/result")
    assert (landed.method, landed.body) == ("GET", b"")
    assert landed.header("content-type") is None
    assert seen(chaos_server, "/submit").body == b'{"a":1}'


async def test_without_the_stage_no_terminal_follows(
    chaos_server: ChaosServer, terminal: TerminalPlugin
) -> None:
    """The default stack (HTTP_FOLLOW_REDIRECTS off) returns the 3xx as it is."""
    chaos_server.script("/old", redirect(301, "/new"))
    pipeline = Pipeline(default_plugins(), terminal)
    outcome = await pipeline.send(httpx.Request("GET", chaos_server.url_for("/old")))
    assert outcome.unwrap().status_code == 301
    assert chaos_server.count("/new") == 0


async def test_the_default_stack_follows_when_the_setting_is_on(
    chaos_server: ChaosServer, other_server: ChaosServer
) -> None:
    """HTTP_FOLLOW_REDIRECTS=true adds the stage; a client's auth stage is bound to its base
    URL, so the other origin gets no token."""
    chaos_server.script("/go", redirect(302, other_server.url_for("/land")))
    other_server.script("/land", Reply.json({"landed": True}))
    settings = HttpSettings(follow_redirects=True, max_redirects=2)
    plugins = [*default_plugins(settings), BearerAuth(TOKEN)]
    async with AsyncClient(chaos_server.url, plugins=plugins, settings=settings) as client:
        response = (await client.get("/go")).unwrap()
    assert response.json() == {"landed": True}
    assert seen(chaos_server, "/go").header("authorization") == f"Bearer {TOKEN}"
    assert seen(other_server, "/land").header("authorization") is None


@pytest.mark.parametrize("auth", ["bearer", "api_key"])
async def test_an_sdk_client_following_redirects_gets_no_token_on_another_origin(
    chaos_server: ChaosServer,
    other_server: ChaosServer,
    terminal: TerminalPlugin,
    auth: str,
) -> None:
    """Under httpx.AsyncClient(follow_redirects=True) over as_httpx_transport(), the auth stage
    adds its credential on its own origin only, and removes the copy httpx carried over."""
    chaos_server.script("/go", redirect(302, other_server.url_for("/land")))
    other_server.script("/land", Reply.json({"landed": True}))
    stage = BearerAuth(TOKEN) if auth == "bearer" else ApiKeyAuth(KEY)
    transport = Pipeline([stage], terminal).as_httpx_transport()
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as sdk:
        response = await sdk.get(chaos_server.url_for("/go"))
    assert response.json() == {"landed": True}
    name, value = ("authorization", f"Bearer {TOKEN}") if auth == "bearer" else ("x-api-key", KEY)
    assert seen(chaos_server, "/go").header(name) == value
    landed = seen(other_server, "/land")
    assert [name for name in CREDENTIALS if landed.header(name) is not None] == []


async def test_an_httpx_terminal_with_a_following_client_still_returns_the_3xx(
    chaos_server: ChaosServer,
) -> None:
    """An httpx client of the user's own with follow_redirects=True does not make the terminal
    follow."""
    chaos_server.script("/old", redirect(302, "/new"))
    async with httpx.AsyncClient(follow_redirects=True) as own:
        terminal = HttpxTerminal(client=own)
        outcome = await terminal.send(httpx.Request("GET", chaos_server.url_for("/old")))
    assert isinstance(outcome, Success)
    assert outcome.unwrap().status_code == 302
    assert chaos_server.count("/new") == 0
