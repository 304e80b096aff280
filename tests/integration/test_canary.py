"""The canary: a secret placed everywhere a credential can ride never shows up anywhere.

A canary value sits in the URL's userinfo, in a standard sensitive query parameter, in each
auth stage (bearer token, API key in a header, API key in a custom-named query parameter, basic
password), in a cookie and in a sensitive header. Then every failure kind is played on every
terminal against a real server on 127.0.0.1, through the client and through
``as_httpx_transport()`` under an ``httpx.AsyncClient``, and through every output mode of
``httprail request``; the canary must appear in no log record (stdlib at DEBUG, the backends'
loggers included, and structlog), no ``str``/``repr``/traceback of an error, no ``Result`` and
no CLI output.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from httprail import AsyncClient, Failure, HttpSettings, MaxRetriesExceededError, RequestError
from httprail.cli import main
from httprail.middleware import ApiKeyAuth, BasicAuth, BearerAuth, Logging, default_plugins
from httprail.terminals import AiohttpTerminal, CurlTerminal, HttpxTerminal, PyreqwestTerminal
from httprail.testing import ChaosServer, Fault, Reply

from .._net import closed_port

CANARY = "CANARY7f3a9c"
USERINFO = f"{CANARY}-userinfo"
QUERY = f"{CANARY}-query"
# Query parameters no list names, sensitive by their ending (token, key, ...).
NAMED_LIKE_CREDENTIALS = ("auth_token", "accessToken", "private-key", "session_secret")
TOKEN = f"{CANARY}-bearer"
HEADER_KEY = f"{CANARY}-header-key"
QUERY_KEY = f"{CANARY}-custom-query-key"
PASSWORD = f"{CANARY}-basic"
COOKIE = f"{CANARY}-cookie"
SENSITIVE = f"{CANARY}-x-auth-token"
# What a canary becomes on the way: the basic credentials, base64-encoded.
ENCODED = (
    base64.b64encode(f"user:{PASSWORD}".encode()).decode(),
    base64.b64encode(f"user:{USERINFO}".encode()).decode(),
)

TERMINALS: dict[str, Callable[[HttpSettings], Any]] = {
    "aiohttp": AiohttpTerminal,
    "httpx": HttpxTerminal,
    "curl": CurlTerminal,
    "reqwest": PyreqwestTerminal,
}
KINDS = (
    "connect_refused",
    "reset",
    "malformed",
    "timeout",
    "client_status",
    "server_status",
    "retries_exhausted",
    "invalid_header",
    "invalid_control",
    "invalid_scheme",
    "breaker_open",
)
EXPECTED = {
    "connect_refused": ("MaxRetriesExceededError", "ConnectError"),
    "reset": ("MaxRetriesExceededError", "ReadError"),
    "malformed": ("MaxRetriesExceededError", "ProtocolError"),
    "timeout": ("RequestTimeoutError", "RequestTimeoutError"),
    "client_status": ("ClientStatusError", "ClientStatusError"),
    "server_status": ("ServerStatusError", "ServerStatusError"),
    "retries_exhausted": ("MaxRetriesExceededError", "ServerStatusError"),
    "invalid_header": ("InvalidRequestError", "InvalidRequestError"),
    "invalid_control": ("InvalidRequestError", "InvalidRequestError"),
    "invalid_scheme": ("InvalidRequestError", "InvalidRequestError"),
    "breaker_open": ("CircuitBreakerOpenError", "CircuitBreakerOpenError"),
}
"""The error (and its last attempt's) each kind must give: the canary rode a real failure."""
BACKEND_LOGGERS = ("httpx", "httpcore", "hpack", "aiohttp", "curl_cffi", "httprail", "pyreqwest")


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text
        for encoded in ENCODED:
            assert encoded not in text


@pytest.fixture(scope="module")
def server() -> Iterator[ChaosServer]:
    with ChaosServer() as chaos:
        chaos.script("/reset", Reply.fail(Fault.RESET))
        chaos.script("/malformed", Reply.fail(Fault.GARBAGE))
        chaos.script("/timeout", Reply.slow(5.0))
        chaos.script("/client_status", Reply.status(404, body=b"no such thing"))
        chaos.script("/server_status", Reply.status(501))
        chaos.script("/retries_exhausted", Reply.status(503))
        chaos.script("/ok", Reply.json({"ok": True}))
        yield chaos


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in BACKEND_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def target(server: ChaosServer, kind: str, *, userinfo: bool = True) -> str:
    """The URL for ``kind``, with the canary in ``api_key`` and (``userinfo``) its userinfo."""
    host = f"127.0.0.1:{closed_port() if kind == 'connect_refused' else server.port}"
    if userinfo:
        host = f"user:{USERINFO}@{host}"
    scheme = "ftp" if kind == "invalid_scheme" else "http"
    path = "/reset" if kind == "breaker_open" else f"/{kind}"
    named = "".join(f"&{name}={CANARY}-{name}" for name in NAMED_LIKE_CREDENTIALS)
    return f"{scheme}://{host}{path}?api_key={QUERY}{named}&page=2"


def request_options(kind: str) -> dict[str, Any]:
    headers = {"X-Auth-Token": SENSITIVE}
    if kind == "invalid_header":
        headers["X-Bad"] = f"{CANARY}-bad\r\nX-Injected: 1"
    elif kind == "invalid_control":  # reqwest's own refusal quoted the value, unquoted
        headers["X-Bad"] = f"{CANARY}-bad\x01"
    return {"headers": headers, "cookies": {"session": COOKIE}}


VARIANTS = ("userinfo", "bearer", "basic")
"""Where the canary rides besides the API keys: the URL's userinfo, a bearer token or a basic
password (one at a time: aiohttp refuses an ``Authorization`` header beside URL credentials)."""


def auth_stages(variant: str) -> list[Any]:
    stages: list[Any] = [
        ApiKeyAuth(HEADER_KEY, name="X-Api-Key"),
        ApiKeyAuth(QUERY_KEY, name="subscription-key", location="query"),
    ]
    if variant == "bearer":
        stages.append(BearerAuth(TOKEN))
    elif variant == "basic":
        stages.append(BasicAuth("user", PASSWORD))
    return stages


def settings_for(kind: str) -> HttpSettings:
    return HttpSettings(
        max_retries=1,
        backoff_base=0.001,
        backoff_max=0.002,
        # Short only where the deadline is the failure: a loaded machine must not turn a reset
        # into a timeout.
        timeout_total=1.0 if kind == "timeout" else 10.0,
        circuit_breaker_threshold=1 if kind == "breaker_open" else 5,
    )


def client_for(terminal: str, kind: str, variant: str) -> AsyncClient:
    settings = settings_for(kind)
    plugins = [Logging(min_level="debug"), *default_plugins(settings), *auth_stages(variant)]
    return AsyncClient(plugins=plugins, settings=settings, terminal=TERMINALS[terminal](settings))


def error_texts(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, RequestError):
        texts.append(error.message)
        for attempt in getattr(error, "attempts", ()):
            texts.extend(error_texts(attempt))
    return texts


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("terminal", sorted(TERMINALS))
async def test_no_failure_on_any_terminal_shows_the_canary(
    server: ChaosServer, logs: pytest.LogCaptureFixture, terminal: str, kind: str
) -> None:
    """Every failure kind, through the client and through the SDK transport, leaks nothing."""
    variant = VARIANTS[(KINDS.index(kind) + sorted(TERMINALS).index(terminal)) % len(VARIANTS)]
    url = target(server, kind, userinfo=variant == "userinfo")
    texts: list[str] = []
    with capture_logs() as events:
        async with client_for(terminal, kind, variant) as client:
            if kind == "breaker_open":
                first = await client.get(url, **request_options(kind))
                texts.extend([repr(first), *error_texts(first.failure())])
            outcome = await client.get(url, **request_options(kind))
            assert isinstance(outcome, Failure)
            error = outcome.failure()
            texts.extend([repr(outcome), str(outcome), *error_texts(error)])
            last = error.last if isinstance(error, MaxRetriesExceededError) else error
            assert (type(error).__name__, type(last).__name__) == EXPECTED[kind]

        async with client_for(terminal, kind, variant) as client:
            transport = client.as_httpx_transport()
            cookies = {"session": COOKIE}
            headers = request_options(kind)["headers"]
            async with httpx.AsyncClient(transport=transport, cookies=cookies) as sdk:
                if kind == "breaker_open":
                    with pytest.raises(httpx.HTTPError):
                        await sdk.get(url, headers=headers)
                try:
                    response = await sdk.get(url, headers=headers)
                except (httpx.HTTPError, httpx.InvalidURL) as raised:
                    texts.extend(error_texts(raised))
                else:
                    assert response.status_code >= 400
                    texts.extend([repr(response), response.text])
    assert_clean(*texts, logs.text, repr(events))
    assert any("HTTP" in text or "Error" in text for text in texts)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("terminal", sorted(TERMINALS))
async def test_a_successful_request_logs_nothing_secret(
    server: ChaosServer, logs: pytest.LogCaptureFixture, terminal: str, variant: str
) -> None:
    """A success at DEBUG (the httpx terminal's own ``HTTP Request:`` line included) is clean."""
    url = target(server, "ok", userinfo=variant == "userinfo")
    with capture_logs() as events:
        async with client_for(terminal, "ok", variant) as client:
            outcome = await client.get(url, **request_options("ok"))
    assert outcome.unwrap().status_code == 200
    assert events
    if terminal == "httpx":
        assert "HTTP Request: GET http://127.0.0.1" in logs.text
        assert "subscription-key=REDACTED" in logs.text
    assert_clean(logs.text, repr(events), repr(outcome))


def stack_file(tmp_path: Path, server: ChaosServer) -> Path:
    file = tmp_path / "httprail.toml"
    file.write_text(
        f"""
[services.billing]
base_url = "http://user:{USERINFO}@127.0.0.1:{server.port}"
api_key_env = "CANARY_KEY"
stack = ["logging", "retry", "circuit_breaker", "auth"]

[services.billing.options.auth]
scheme = "query"
name = "subscription-key"

[services.billing.options.retry]
max_retries = 1
"""
    )
    return file


CLI_KINDS = {
    "connect_refused": 9,
    "reset": 9,
    "malformed": 9,
    "timeout": 7,
    "client_status": 4,
    "retries_exhausted": 9,
    "invalid_header": 2,
    "invalid_scheme": 2,
}
"""Each kind and the exit code it must give (two tries: every failed one is 9)."""


@pytest.mark.parametrize("mode", ["plain", "-v", "--json-output"])
@pytest.mark.parametrize("kind", sorted(CLI_KINDS))
def test_no_output_mode_of_httprail_request_shows_the_canary(
    server: ChaosServer,
    logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kind: str,
    mode: str,
) -> None:
    """``httprail request`` in plain, ``-v`` and ``--json-output`` mode prints no canary."""
    monkeypatch.setenv("HTTP_BACKOFF_BASE", "0.001")
    monkeypatch.setenv("HTTP_BACKOFF_MAX", "0.002")
    monkeypatch.setenv("CANARY_KEY", QUERY_KEY)
    userinfo = list(CLI_KINDS).index(kind) % 2 == 0
    timeout = "1" if kind == "timeout" else "10"
    options = ["--timeout", timeout, "--retries", "1", "-H", f"X-Auth-Token: {SENSITIVE}"]
    options += ["-H", f"Cookie: session={COOKIE}"]
    if mode != "plain":
        options.append(mode)
    extra = [] if userinfo else ["-H", f"Authorization: Bearer {TOKEN}"]
    if kind == "invalid_header":
        extra += ["-H", f"X-Bad: {CANARY}-bad\x01"]
    url = target(server, kind, userinfo=userinfo)
    code = main(["request", "GET", url, *options, *extra])
    out, err = capsys.readouterr()
    assert code == CLI_KINDS[kind]
    assert_clean(out, err, logs.text)
    if kind == "client_status":  # the same call through a declared stack with a query key
        file = stack_file(tmp_path, server)
        path = f"/client_status?api_key={QUERY}"
        code = main(["request", "GET", path, "--stack", f"{file}:billing", *options])
        out, err = capsys.readouterr()
        assert code == CLI_KINDS[kind]
        assert "subscription-key=REDACTED" in out + err
        assert_clean(out, err, logs.text)
