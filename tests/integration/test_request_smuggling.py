"""No terminal puts CR, LF or NUL on the wire: such a request is refused before it is sent.

Each case (a line break or NUL in a header value, a header name, the method, the URL path or
query; a whole second request injected through a header value or the method) is played
against every terminal, aimed at a raw server that records every byte: the outcome is
``Failure(InvalidRequestError)`` and the server saw no connection at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from httprail import AsyncClient, ConfigError, HttpSettings, InvalidRequestError
from httprail.testing import MockTerminal

from ._raw_server import RawServer
from ._terminals import build
from .test_terminal_conformance import FAST

INJECTED = "v\r\nContent-Length: 0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x"
SECRET = "sk-canary-4242"

# (case id, method, path, headers)
CASES: list[tuple[str, str, str, dict[str, str]]] = [
    ("value-cr", "GET", "/", {"X-A": "a\rb"}),
    ("value-lf", "GET", "/", {"X-A": "a\nb"}),
    ("value-nul", "GET", "/", {"X-A": "a\x00b"}),
    ("value-crlf-injection", "GET", "/", {"X-A": INJECTED}),
    ("value-secret-crlf", "GET", "/", {"Authorization": f"Bearer {SECRET}\r\nX-B: 1"}),
    ("name-cr", "GET", "/", {"X-A\rX-B": "v"}),
    ("name-lf", "GET", "/", {"X-A\nX-B": "v"}),
    ("name-nul", "GET", "/", {"X-A\x00": "v"}),
    ("name-crlf-injection", "GET", "/", {"X-A: 1\r\nX-B": "v"}),
    ("method-cr", "GET\r", "/", {}),
    ("method-lf", "GE\nT", "/", {}),
    ("method-nul", "GET\x00", "/", {}),
    ("method-crlf-injection", "GET /admin HTTP/1.1\r\nHost: x\r\n\r\nGET", "/", {}),
    ("path-cr", "GET", "/a\rb", {}),
    ("path-lf", "GET", "/a\nb", {}),
    ("path-nul", "GET", "/a\x00b", {}),
    ("path-crlf-injection", "GET", "/ HTTP/1.1\r\nHost: x\r\n\r\nGET /admin", {}),
    ("query-cr", "GET", "/?q=a\rb", {}),
    ("query-lf", "GET", "/?q=a\nb", {}),
    ("query-nul", "GET", "/?q=a\x00b", {}),
]


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    async with RawServer() as raw:
        yield raw


# Nothing here is about timing: the conformance suite's 0.3 s timeouts (``FAST``) turned a
# stall of a loaded full run into a timeout and a retry of the clean request, so a second
# connection (seen twice in CI on curl as a read timeout, once on aiohttp as a connect
# timeout). Every timeout is relaxed; the refused requests never wait on any of them.
UNHURRIED = dict.fromkeys(FAST, 5.0)


def _client(kind: str, server: RawServer, **options: Any) -> AsyncClient:
    settings = HttpSettings(**UNHURRIED)
    return AsyncClient(server.url, settings=settings, terminal=build(kind, settings), **options)


@pytest.mark.parametrize(
    ("method", "path", "headers"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_a_request_carrying_cr_lf_or_nul_is_refused_and_nothing_reaches_the_wire(
    kind: str, server: RawServer, method: str, path: str, headers: dict[str, str]
) -> None:
    """Through the default stack, each case is an InvalidRequestError and no byte is sent."""
    async with _client(kind, server) as client:
        result = await client.request(method, path, headers=headers)
        error = result.failure()
        assert isinstance(error, InvalidRequestError), result
        assert SECRET not in str(error)
        # The same client still sends a clean request: the check refused only the bad one.
        assert (await client.get("/")).unwrap().text == "ok"
    assert server.connections == 1
    assert b"admin" not in server.received
    assert b"\x00" not in server.received
    assert server.received.count(b"\r\n\r\n") == 1


@pytest.mark.parametrize(
    ("method", "headers"),
    [(c[1], c[3]) for c in CASES if c[2] == "/"],
    ids=[c[0] for c in CASES if c[2] == "/"],
)
async def test_the_terminal_itself_refuses_a_request_built_by_hand(
    kind: str, server: RawServer, method: str, headers: dict[str, str]
) -> None:
    """A request built with httpx and given to a terminal directly is refused by the terminal."""
    terminal = build(kind, HttpSettings(**FAST))
    try:
        request = httpx.Request(method, server.url + "/", headers=headers)
        result = await terminal.send(request)
    finally:
        await terminal.aclose()
    error = result.failure()
    assert isinstance(error, InvalidRequestError)
    assert str(error).startswith("refused before sending: ")
    assert SECRET not in str(error)
    assert server.connections == 0
    assert server.received == b""


async def test_the_sdk_transport_refuses_an_injected_header_and_sends_nothing(
    kind: str, server: RawServer
) -> None:
    """Through ``as_httpx_transport()``, httpx's LocalProtocolError is raised, nothing is sent."""
    async with _client(kind, server) as client:
        sdk = httpx.AsyncClient(transport=client.as_httpx_transport())
        async with sdk:
            with pytest.raises(httpx.LocalProtocolError) as raised:
                await sdk.get(server.url + "/", headers={"X-A": INJECTED})
    assert "X-A" in str(raised.value)
    assert server.connections == 0
    assert server.received == b""


@pytest.mark.parametrize(
    "headers",
    [{"X-A": INJECTED}, {"X-A\r\nB": "1"}, [("Authorization", f"Bearer {SECRET}\n")]],
    ids=["value", "name", "secret-value"],
)
def test_client_headers_with_a_line_break_are_a_config_error_at_construction(
    headers: Any,
) -> None:
    """``AsyncClient(headers=...)`` refuses CR/LF at once, naming the header, not its value."""
    with pytest.raises(ConfigError, match=r"AsyncClient\(headers=\.\.\.\) is invalid") as raised:
        AsyncClient(
            "http://127.0.0.1:9",
            headers=headers,
            terminal=MockTerminal(lambda _: httpx.Response(200)),
        )
    assert SECRET not in str(raised.value)
    assert "position" in str(raised.value)
