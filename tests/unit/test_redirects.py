"""The Redirects stage's rules and the auth stages' origin binding, over MockTerminal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from structlog.testing import capture_logs

from httprail import (
    AsyncClient,
    ConfigError,
    HttpSettings,
    Pipeline,
    RedirectError,
    RequestContext,
    ServerStatusError,
    Success,
    TooManyRedirectsError,
    set_context,
)
from httprail.middleware import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    Redirects,
    auth,
    default_plugins,
)
from httprail.terminals import HttpxTerminal, to_httpx_exception
from httprail.testing import MockTerminal

A = "https://a.test"
B = "https://b.test"


def routes(table: dict[str, httpx.Response]) -> MockTerminal:
    """A terminal answering by URL (without query); 404 for anything else."""

    def answer(request: httpx.Request) -> httpx.Response:
        key = str(request.url.copy_with(query=None, fragment=None))
        return table.get(key, httpx.Response(404))

    return MockTerminal(answer)


def to(status: int, location: str) -> httpx.Response:
    return httpx.Response(status, headers={"Location": location})


OK = httpx.Response(200, json={"ok": True})


async def follow(
    table: dict[str, httpx.Response], request: httpx.Request, *stages: object
) -> tuple[MockTerminal, Success[httpx.Response] | object]:
    terminal = routes(table)
    stack = list(stages) or [Redirects()]
    outcome = await Pipeline(stack, terminal).send(request)  # type: ignore[arg-type]
    return terminal, outcome


@pytest.mark.parametrize(
    ("status", "method", "after"),
    [
        (301, "POST", "GET"),
        (301, "PUT", "PUT"),
        (302, "POST", "GET"),
        (302, "HEAD", "HEAD"),
        (303, "PUT", "GET"),
        (307, "POST", "POST"),
        (308, "DELETE", "DELETE"),
    ],
)
async def test_the_method_after_a_redirect_is_httpx_s(status: int, method: str, after: str) -> None:
    """301 turns POST into GET, 302 and 303 turn anything but HEAD into GET, 307/308 keep it;
    the body goes along only when the method stays."""
    table = {f"{A}/from": to(status, "/to"), f"{A}/to": OK}
    request = httpx.Request(method, f"{A}/from", content=b"body")
    terminal, outcome = await follow(table, request)
    assert isinstance(outcome, Success)
    hop = terminal.requests[-1]
    assert hop.method == after
    assert hop.content == (b"body" if after == method else b"")
    assert ("content-length" in hop.headers) == (after == method)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https:/other", f"{A}/other#frag"),  # absolute without a host: the same host
        ("next#part", f"{A}/dir/next#part"),
        ("/kept", f"{A}/kept#frag"),  # the request's fragment carries over
    ],
)
async def test_locations_are_resolved_as_httpx_does(location: str, expected: str) -> None:
    """Relative, host-less and fragment-less Locations resolve against the URL sent."""
    table = {f"{A}/dir/start": to(302, location)}
    terminal, _ = await follow(table, httpx.Request("GET", f"{A}/dir/start#frag"))
    assert str(terminal.requests[-1].url) == expected


@pytest.mark.parametrize("location", ["ftp://files.test/x", "http://[::1", "mailto:x@y.test"])
async def test_a_location_that_is_not_http_is_a_redirect_error(location: str) -> None:
    """A Location that does not parse, or is not http(s), ends with RedirectError."""
    table = {f"{A}/x": to(302, location)}
    terminal, outcome = await follow(table, httpx.Request("GET", f"{A}/x"))
    error = outcome.failure()  # type: ignore[attr-defined]
    assert type(error) is RedirectError
    assert error.status_code == 302
    assert not error.counts_against_upstream
    assert len(terminal.requests) == 1


async def test_zero_max_redirects_follows_none() -> None:
    """max_redirects=0: the first redirect is already one too many."""
    table = {f"{A}/x": to(302, "/y"), f"{A}/y": OK}
    _, outcome = await follow(table, httpx.Request("GET", f"{A}/x"), Redirects(max_redirects=0))
    error = outcome.failure()  # type: ignore[attr-defined]
    assert isinstance(error, TooManyRedirectsError)
    assert error.redirects == 0
    assert isinstance(to_httpx_exception(error), httpx.TooManyRedirects)


async def test_a_streamed_body_is_not_replayed() -> None:
    """A 307 to a request whose body is a stream is returned as it is (and logged)."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"part"

    table = {f"{A}/up": to(307, "/elsewhere")}
    request = httpx.Request("POST", f"{A}/up", content=chunks())
    with capture_logs() as logs:
        terminal, outcome = await follow(table, request)
    assert outcome.unwrap().status_code == 307  # type: ignore[attr-defined]
    assert len(terminal.requests) == 1
    assert [e["event"] for e in logs] == ["httprail.redirect_not_followed"]


async def test_a_failure_after_a_hop_is_returned_as_it_is() -> None:
    """An error on a later hop is the call's outcome."""
    table = {f"{A}/x": to(302, "/down"), f"{A}/down": httpx.Response(503)}
    _, outcome = await follow(table, httpx.Request("GET", f"{A}/x"))
    assert isinstance(outcome.failure(), ServerStatusError)  # type: ignore[attr-defined]


async def test_a_first_failure_is_returned_as_it_is() -> None:
    """A failure before any redirect passes through untouched."""
    _, outcome = await follow({}, httpx.Request("GET", f"{A}/missing"))
    assert outcome.failure().status_code == 404  # type: ignore[attr-defined]


async def test_the_declared_auth_stage_takes_origins() -> None:
    """auth(...) (the stack files' stage) passes origins to the stage it builds."""
    for scheme in ("bearer", "header", "query"):
        stage = auth("key", scheme=scheme, origins=[A])  # type: ignore[arg-type]
        assert stage.origins == frozenset({"https://a.test:443"})


async def test_a_3xx_without_location_is_returned() -> None:
    """A 304 or a 302 without Location is an ordinary response."""
    table = {f"{A}/x": httpx.Response(302)}
    _, outcome = await follow(table, httpx.Request("GET", f"{A}/x"))
    assert outcome.unwrap().status_code == 302  # type: ignore[attr-defined]


async def test_a_hop_to_another_origin_starts_a_fresh_context() -> None:
    """The caller's upstream key named the first origin: a hop elsewhere drops it, and every
    hop is attempt 1; the extra strip_headers go too, the Host follows the URL."""
    table = {f"{A}/x": to(302, f"{B}/y"), f"{B}/y": OK}
    request = httpx.Request("GET", f"{A}/x", headers={"X-Session": "s", "X-Keep": "k"})
    set_context(request, RequestContext(attempt=2, upstream="provider-a"))
    terminal, _ = await follow(table, request, Redirects(strip_headers=["X-Session"]))
    hop = terminal.requests[-1]
    ctx = hop.extensions["httprail"]
    assert (ctx.attempt, ctx.upstream) == (1, None)
    assert "x-session" not in hop.headers
    assert hop.headers["x-keep"] == "k"
    assert hop.headers["host"] == "b.test"


async def test_an_upgrade_to_https_keeps_the_credentials() -> None:
    """http → https on the same host (default ports) is the same site: Authorization stays,
    and an auth stage bound to the http origin signs the https hop."""
    table = {"http://a.test/x": to(301, f"{A}/x"), f"{A}/x": OK}
    stages = [Redirects(), BasicAuth("u", "p", origins="http://a.test")]
    terminal, outcome = await follow(table, httpx.Request("GET", "http://a.test/x"), *stages)
    assert isinstance(outcome, Success)
    assert terminal.requests[-1].headers["authorization"].startswith("Basic ")


def test_redirects_options_are_checked() -> None:
    """Bad options are ConfigErrors naming them; from_settings reads HTTP_MAX_REDIRECTS."""
    for options, word in (
        ({"max_redirects": "5"}, "max_redirects"),
        ({"max_redirects": 101}, "max_redirects"),
        ({"strip_headers": "X-A"}, "strip_headers"),
    ):
        with pytest.raises(ConfigError, match=word):
            Redirects(**options)  # type: ignore[arg-type]
    stage = Redirects.from_settings(HttpSettings(max_redirects=7))
    assert repr(stage) == "Redirects(max_redirects=7, allow_downgrade=False)"


def test_the_default_stack_has_the_stage_only_when_asked() -> None:
    """HTTP_FOLLOW_REDIRECTS adds Redirects right inside the total timeout."""
    assert not any(isinstance(p, Redirects) for p in default_plugins())
    names = [p.name for p in default_plugins(HttpSettings(follow_redirects=True))]
    assert names[2:5] == ["timeout_total", "redirects", "retry"]


def test_the_httpx_terminal_refuses_to_follow() -> None:
    """HttpxTerminal(follow_redirects=True) is a ConfigError pointing at the stage."""
    with pytest.raises(ConfigError, match="Redirects stage"):
        HttpxTerminal(follow_redirects=True)


# --- auth stages and their origins -------------------------------------------------------------

Stage = Callable[..., object]


@pytest.mark.parametrize(
    "make",
    [
        lambda **o: BearerAuth("tok", **o),
        lambda **o: ApiKeyAuth("key", **o),
        lambda **o: BasicAuth("u", "p", **o),
    ],
    ids=["bearer", "api_key", "basic"],
)
async def test_an_auth_stage_binds_to_the_first_origin_it_sees(make: Stage) -> None:
    """Unbound, a stage takes the first request's origin; another origin gets no credential
    (logged once); origins says which."""
    stage = make()
    terminal = MockTerminal(lambda request: OK)
    pipeline = Pipeline([stage], terminal)  # type: ignore[list-item]
    with capture_logs() as logs:
        for url in (f"{A}/1", f"{B}/2", f"{B}/3", f"{A}/4"):
            await pipeline.send(httpx.Request("GET", url))
    signed = [("authorization" in r.headers or "x-api-key" in r.headers) for r in terminal.requests]
    assert signed == [True, False, False, True]
    assert [e["event"] for e in logs] == ["httprail.auth_foreign_origin"]
    assert logs[0]["origin"] == "https://b.test:443"
    assert stage.origins == frozenset({"https://a.test:443"})  # type: ignore[attr-defined]


async def test_a_foreign_origin_loses_a_copied_credential() -> None:
    """A request to another origin that already carries this stage's value (copied by an
    SDK's redirect) has it removed: header, bearer token and query key alike."""
    bearer = BearerAuth("tok", origins=A)
    header = ApiKeyAuth("key", origins=[A])
    query = ApiKeyAuth("key", name="code", location="query", origins=A)
    terminal = MockTerminal(lambda request: OK)
    pipeline = Pipeline([bearer, header, query], terminal)
    copied = httpx.Request(
        "GET",
        f"{B}/x?code=key&page=2",
        headers={"Authorization": "Bearer tok", "X-API-Key": "key", "X-Other": "1"},
    )
    await pipeline.send(copied)
    sent = terminal.requests[-1]
    assert "authorization" not in sent.headers
    assert "x-api-key" not in sent.headers
    assert sent.url.params.get("code") is None
    assert sent.url.params["page"] == "2"


async def test_star_sends_everywhere_and_a_client_binds_its_base_url() -> None:
    """origins='*' signs any origin; AsyncClient(base_url) binds an unbound stage to it, and
    never widens explicit origins."""
    anywhere = BearerAuth("tok", origins="*")
    terminal = MockTerminal(lambda request: OK)
    await Pipeline([anywhere], terminal).send(httpx.Request("GET", f"{B}/x"))
    assert terminal.requests[-1].headers["authorization"] == "Bearer tok"
    assert anywhere.origins is None

    unbound, explicit = ApiKeyAuth("k1"), auth("k2", scheme="header", name="X-Two", origins=B)
    async with AsyncClient(A, plugins=[unbound, explicit], terminal=terminal) as client:
        await client.get(f"{B}/y")
    sent = terminal.requests[-1]
    assert "x-api-key" not in sent.headers  # bound to A by the client
    assert sent.headers["x-two"] == "k2"
    assert unbound.origins == frozenset({"https://a.test:443"})
    assert explicit.origins == frozenset({"https://b.test:443"})  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "origins",
    [[], "ftp://a.test", "https://a.test/path", "https://u:p@a.test", [42], "nope", "http://[::1"],
)
def test_a_bad_origin_is_a_config_error(origins: object) -> None:
    """origins must be '*', or origins: scheme, host and an optional port."""
    with pytest.raises(ConfigError, match="origins"):
        BearerAuth("tok", origins=origins)  # type: ignore[arg-type]
