"""The aiohttp and curl terminals: optional imports, the exception tables, settings they honour."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import subprocess
import sys

import aiohttp
import certifi
import curl_cffi
import httpx
import pytest
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

from httprail import (
    ConfigError,
    ConnectError,
    DecodeError,
    HttpSettings,
    InvalidRequestError,
    ProtocolError,
    ReadError,
    RequestError,
    RequestTimeoutError,
    Success,
    TransportError,
    WriteError,
    build_stack,
)
from httprail.terminals import AiohttpTerminal, CurlTerminal
from httprail.terminals import _curl as curl_module
from httprail.terminals._curl import _status, _Transfer
from httprail.terminals._lean import LeanTerminal, http_version
from httprail.testing import ChaosServer

URL = "http://api.test/x"
URL_ = yarl.URL(URL)


# -- optional backends ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terminal", "module", "extra"),
    [(AiohttpTerminal, "aiohttp", "aiohttp"), (CurlTerminal, "curl_cffi", "curl")],
)
def test_a_missing_backend_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, terminal: type[LeanTerminal], module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ConfigError) as caught:
        terminal()
    assert f"pip install 'httprail[{extra}]'" in str(caught.value)
    assert isinstance(caught.value.__cause__, ImportError)


def test_importing_httprail_imports_no_optional_backend() -> None:
    code = (
        "import sys, httprail, httprail.terminals\n"
        "loaded = {'aiohttp', 'curl_cffi'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- exception tables -------------------------------------------------------------------------


def _aiohttp_cases() -> list[tuple[Exception, type[RequestError], str | None]]:
    key = aiohttp.client_reqrep.ConnectionKey(
        "h", 80, False, True, None, None, None, None
    )  # what a connector error is built with
    info = aiohttp.RequestInfo(URL_, "GET", CIMultiDictProxy(CIMultiDict()), URL_)
    reset = aiohttp.ClientPayloadError("cut short")
    reset.__cause__ = ConnectionResetError(errno.ECONNRESET, "reset")
    return [
        (
            aiohttp.ConnectionTimeoutError("Connection timeout to host"),
            RequestTimeoutError,
            "connect",
        ),
        (aiohttp.SocketTimeoutError("Timeout on reading"), RequestTimeoutError, "read"),
        (aiohttp.ServerTimeoutError("Timeout on reading"), RequestTimeoutError, "read"),
        (TimeoutError(), RequestTimeoutError, "read"),
        (
            aiohttp.ClientConnectorError(key, OSError(errno.ECONNREFUSED, "refused")),
            ConnectError,
            None,
        ),
        (aiohttp.ServerDisconnectedError(), ProtocolError, None),
        (aiohttp.ClientPayloadError("Response payload is not completed"), ProtocolError, None),
        (reset, ReadError, None),
        (aiohttp.ClientPayloadError("x. ConnectionResetError(104, 'reset')"), ReadError, None),
        (aiohttp.TooManyRedirects(info, ()), ProtocolError, None),
        (
            aiohttp.ClientResponseError(info, (), status=400, message="bad line"),
            ProtocolError,
            None,
        ),
        (aiohttp.NonHttpUrlClientError("ftp://x"), InvalidRequestError, None),
        (aiohttp.InvalidURL("http://[x"), InvalidRequestError, None),
        (aiohttp.ClientOSError(errno.EPIPE, "broken pipe"), WriteError, None),
        (aiohttp.ClientOSError(errno.ECONNRESET, "reset"), ReadError, None),
        (aiohttp.ClientConnectionError("Connection closed"), ReadError, None),
        (aiohttp.ClientError("something else"), TransportError, None),
        (ConnectionRefusedError(), ConnectError, None),
        (ConnectionResetError(), ReadError, None),
        (ValueError("Newline in header"), InvalidRequestError, None),
        (httpx.DecodingError("bad gzip"), DecodeError, None),
        (RuntimeError("a bug"), TransportError, None),
    ]


@pytest.mark.parametrize(("exc", "kind", "phase"), _aiohttp_cases())
def test_aiohttp_exceptions_map_to_the_tree(
    exc: Exception, kind: type[RequestError], phase: str | None
) -> None:
    request = httpx.Request("GET", URL)
    error = AiohttpTerminal().map_error(exc, request)
    assert type(error) is kind
    assert error.request is request
    assert error.__cause__ is exc
    if phase is not None:
        assert isinstance(error, RequestTimeoutError)
        assert error.phase == phase


def test_aiohttp_before_3_10_tells_connect_timeouts_by_their_message() -> None:
    terminal = AiohttpTerminal()
    terminal._connect_timeout_class = None
    terminal._non_http_class = None
    request = httpx.Request("GET", URL)
    connect = terminal.map_error(aiohttp.ServerTimeoutError("Connection timeout to h"), request)
    read = terminal.map_error(aiohttp.ServerTimeoutError("Timeout on reading data"), request)
    assert (getattr(connect, "phase", None), getattr(read, "phase", None)) == ("connect", "read")


def _curl(code: int, message: str = "failed") -> curl_cffi.CurlError:
    return curl_cffi.CurlError(f"Failed to perform, curl: ({code}) {message}", code)


@pytest.mark.parametrize(
    ("exc", "kind", "phase"),
    [
        (_curl(7, "Could not connect to server"), ConnectError, None),
        (_curl(6, "Could not resolve host"), ConnectError, None),
        (_curl(60, "SSL certificate problem"), ConnectError, None),
        (_curl(28, "Connection timed out after 200 milliseconds"), RequestTimeoutError, "connect"),
        (_curl(28, "Resolving timed out after 200 milliseconds"), RequestTimeoutError, "connect"),
        (_curl(28, "Operation timed out after 200 ms with 0 bytes"), RequestTimeoutError, "read"),
        (_curl(52, "Empty reply from server"), ProtocolError, None),
        (_curl(18, "end of response with 91 bytes missing"), ProtocolError, None),
        (_curl(1, "Received HTTP/0.9 when not allowed"), ProtocolError, None),
        (_curl(92, "Stream error in the HTTP/2 framing layer"), ProtocolError, None),
        (_curl(56, "Recv failure: Connection reset by peer"), ReadError, None),
        (_curl(55, "Send failure: Broken pipe"), WriteError, None),
        (_curl(1, 'Protocol "ftp" is disabled'), InvalidRequestError, None),
        (_curl(3, "URL rejected: Bad hostname"), InvalidRequestError, None),
        (_curl(47, "Maximum redirects followed"), ProtocolError, None),
        (_curl(61, "Unrecognized content encoding"), DecodeError, None),
        (_curl(23, "Failure writing output"), TransportError, None),
        (RuntimeError("a bug"), TransportError, None),
    ],
)
def test_curl_errors_map_to_the_tree(
    exc: Exception, kind: type[RequestError], phase: str | None
) -> None:
    request = httpx.Request("GET", URL)
    error = CurlTerminal().map_error(exc, request)
    assert type(error) is kind
    assert error.__cause__ is exc
    if phase is not None:
        assert isinstance(error, RequestTimeoutError)
        assert error.phase == phase


def test_curl_translates_a_failure_that_is_not_a_curl_error_to_itself() -> None:
    exc = RuntimeError("a bug")
    assert CurlTerminal().translate_curl(exc) is exc


@pytest.mark.parametrize("line", [b"HTTP/1.1 abc OK", b"HTTP/x.y 200 OK", b""])
def test_a_malformed_status_line_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        _status(line)


def test_status_lines_and_versions() -> None:
    assert _status(b"HTTP/2 204") == (b"HTTP/2", 204, b"")
    assert _status(b"HTTP/1.0 404 Not Found") == (b"HTTP/1.0", 404, b"Not Found")
    assert http_version(1, 1) == b"HTTP/1.1"


# -- settings and options ---------------------------------------------------------------------


@pytest.mark.parametrize("verify", [False, certifi.where()])
async def test_aiohttp_options_build_a_working_session(
    chaos_server: ChaosServer, verify: bool | str
) -> None:
    terminal = AiohttpTerminal(HttpSettings(keepalive_expiry=0), verify=verify)
    assert repr(terminal) == "AiohttpTerminal(max_connections=100)"
    assert terminal.session is terminal.session
    assert isinstance(await terminal.send(httpx.Request("GET", chaos_server.url)), Success)
    await terminal.aclose()


@pytest.mark.parametrize("verify", [False, certifi.where()])
async def test_curl_options_give_a_working_transfer(
    chaos_server: ChaosServer, verify: bool | str
) -> None:
    terminal = CurlTerminal(HttpSettings(max_keepalive=0, http2=False), verify=verify)
    assert repr(terminal) == "CurlTerminal(http2=False)"
    for _ in range(2):
        assert isinstance(await terminal.send(httpx.Request("GET", chaos_server.url)), Success)
    await terminal.aclose()
    # max_keepalive=0: every request had its own connection
    assert len({r.connection_id for r in chaos_server.requests}) == 2


async def test_curl_without_timeouts_waits_for_the_answer(chaos_server: ChaosServer) -> None:
    terminal = CurlTerminal()
    request = httpx.Request("GET", chaos_server.url)
    request.extensions["timeout"] = httpx.Timeout(None).as_dict()
    assert isinstance(await terminal.send(request), Success)
    await terminal.aclose()


@pytest.mark.parametrize("name", ["aiohttp", "curl"])
async def test_a_stack_file_picks_the_terminal_by_name(
    chaos_server: ChaosServer, name: str
) -> None:
    declaration = {
        "services": {
            "billing": {
                "base_url": chaos_server.url,
                "terminal": name,
                "settings": {"timeout_read": 7},
            }
        }
    }
    async with build_stack(declaration, "billing", environ={}) as stack:
        terminal = stack.pipeline.terminal
        assert terminal.name == name
        assert isinstance(terminal, LeanTerminal)
        assert terminal.settings.timeout_read == 7
        assert isinstance(await stack.client.get("/"), Success)


async def test_curl_gives_up_on_a_connect_that_libcurl_does_not_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The terminal's own guard: libcurl has been seen hanging past its timeouts."""
    monkeypatch.setattr(curl_module, "_CONNECT_GRACE", -0.08)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        terminal = CurlTerminal(HttpSettings(timeout_connect=0.15, timeout_read=0.05))
        outcome = await terminal.send(httpx.Request("GET", f"http://127.0.0.1:{port}/"))
        await terminal.aclose()
        for filler in fillers:
            filler.close()
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "connect"
    assert "no connection within the connect timeout" in str(error)


async def test_curl_reads_past_informational_heads_and_unfolds_headers() -> None:
    head = asyncio.get_running_loop().create_future()
    transfer = _Transfer(curl_cffi.Curl(), head)
    for line in [
        b"HTTP/1.1 100 Continue\r\n",
        b"\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"X-Long: first\r\n",
        b"  second\r\n",
        b"X-Other: 1\r\n",
    ]:
        transfer.on_header(line)
        assert not head.done()
    transfer.on_header(b"\r\n")
    assert head.done()
    assert transfer.status_line == b"HTTP/1.1 200 OK"
    assert transfer.headers() == [(b"X-Long", b"first second"), (b"X-Other", b"1")]
    transfer.curl.close()
