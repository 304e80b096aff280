"""TLS and proxies as settings, honoured the same by every terminal: against a self-signed HTTPS
server on 127.0.0.1 (a CA, a server and a client certificate made by trustme at test time) and a
local proxy that records what it is asked (CONNECT for https://, absolute-form for http://)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from httprail import (
    AsyncClient,
    ConfigError,
    ConnectError,
    Failure,
    HttpSettings,
    Success,
    TerminalPlugin,
    TransportError,
)
from httprail.terminals import AiohttpTerminal, CurlTerminal, HttpxTerminal, PyreqwestTerminal

TERMINALS: dict[str, Callable[..., TerminalPlugin]] = {
    "aiohttp": AiohttpTerminal,
    "httpx": HttpxTerminal,
    "curl": CurlTerminal,
    "reqwest": PyreqwestTerminal,
}
CANARY = "CANARY-S3CRET-9f2e"
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@dataclass
class Certs:
    ca: trustme.CA
    ca_pem: Path
    client_pem: Path  # the client's certificate and key, one PEM
    client_cert: Path
    client_key: Path


@dataclass
class Server:
    url: str
    peer_certs: list[Any] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


@dataclass
class Proxy:
    url: str
    seen: list[str] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


async def _close_all(writers: list[asyncio.StreamWriter]) -> None:
    """Close every connection a test server accepted or opened, and wait for them."""
    for writer in writers:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    client = ca.issue_cert("client.test")
    client.private_key_and_cert_chain_pem.write_to_path(str(folder / "client.pem"))
    client.cert_chain_pems[0].write_to_path(str(folder / "client.crt"))
    client.private_key_pem.write_to_path(str(folder / "client.key"))
    return Certs(
        ca,
        folder / "ca.pem",
        folder / "client.pem",
        folder / "client.crt",
        folder / "client.key",
    )


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
) -> None:
    server.writers.append(writer)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        server.requests.append(head)
        server.peer_certs.append(writer.get_extra_info("peercert"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def https_server(
    certs: Certs, *, client_cert_required: bool = False
) -> AsyncIterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certs.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    if client_cert_required:
        certs.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    state = Server("")
    listener = await asyncio.start_server(
        lambda r, w: _answer(r, w, state), "127.0.0.1", 0, ssl=context
    )
    port = listener.sockets[0].getsockname()[1]
    state.url = f"https://127.0.0.1:{port}"
    async with listener:
        yield state
        await _close_all(state.writers)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proxy: Proxy) -> None:
    proxy.writers.append(writer)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (OSError, asyncio.IncompleteReadError):
        writer.close()
        return
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    proxy.seen.append(line)
    method, target, _ = line.split(" ", 2)
    if method != "CONNECT":  # an http:// request in absolute form: answered here
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nvia proxy")
        await writer.drain()
        writer.close()
        return
    host, _, port = target.rpartition(":")
    up_reader, up_writer = await asyncio.open_connection(host, int(port))
    proxy.writers.append(up_writer)
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    state = Proxy("")
    listener = await asyncio.start_server(lambda r, w: _proxy(r, w, state), "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    async with listener:
        yield state
        await _close_all(state.writers)


async def _get(terminal: str, url: str, **settings: Any) -> Any:
    """One GET through a bare chain on ``terminal`` built from these settings."""
    built = HttpSettings(**settings)
    async with AsyncClient(plugins=[], settings=built, terminal=TERMINALS[terminal](built)) as c:
        return await c.get(url)


def _ok(outcome: Any) -> bool:
    return isinstance(outcome, Success) and outcome.unwrap().text == "ok"


@pytest.fixture(params=sorted(TERMINALS))
def terminal(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def test_verification_refuses_a_self_signed_server_with_a_typed_error(
    certs: Certs, terminal: str
) -> None:
    async with https_server(certs) as server:
        outcome = await _get(terminal, f"{server.url}/x?api_key={CANARY}")
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, ConnectError)
    assert CANARY not in str(error)
    assert CANARY not in repr(error)
    assert server.requests == []


async def test_the_ca_bundle_setting_makes_the_server_trusted(certs: Certs, terminal: str) -> None:
    async with https_server(certs) as server:
        assert _ok(await _get(terminal, server.url, ca_bundle=certs.ca_pem))


async def test_verify_off_accepts_the_self_signed_server(certs: Certs, terminal: str) -> None:
    async with https_server(certs) as server:
        assert _ok(await _get(terminal, server.url, verify=False))


async def test_the_client_certificate_is_sent_when_the_server_requires_one(
    certs: Certs, terminal: str
) -> None:
    async with https_server(certs, client_cert_required=True) as server:
        refused = await _get(terminal, server.url, ca_bundle=certs.ca_pem)
        assert isinstance(refused, Failure)
        assert isinstance(refused.failure(), TransportError)
        separate = {"client_cert": certs.client_cert, "client_key": certs.client_key}
        assert _ok(await _get(terminal, server.url, ca_bundle=certs.ca_pem, **separate))
        combined = await _get(
            terminal, server.url, ca_bundle=certs.ca_pem, client_cert=certs.client_pem
        )
        assert _ok(combined)
    subjects = [cert for cert in server.peer_certs if cert]
    assert len(subjects) == 2
    assert all("client.test" in str(cert["subjectAltName"]) for cert in subjects)


async def test_an_explicit_proxy_carries_https_through_connect(
    certs: Certs, terminal: str, proxy: Proxy
) -> None:
    async with https_server(certs) as server:
        outcome = await _get(terminal, server.url, ca_bundle=certs.ca_pem, proxy_url=proxy.url)
    assert _ok(outcome)
    assert proxy.seen == [f"CONNECT {server.url.removeprefix('https://')} HTTP/1.1"]


async def test_an_explicit_proxy_carries_http_in_absolute_form(terminal: str, proxy: Proxy) -> None:
    outcome = await _get(terminal, "http://backend.test:8080/path?q=1", proxy_url=proxy.url)
    assert isinstance(outcome, Success)
    assert outcome.unwrap().text == "via proxy"
    assert proxy.seen == ["GET http://backend.test:8080/path?q=1 HTTP/1.1"]


async def test_trust_env_uses_https_proxy_and_no_proxy(
    certs: Certs, terminal: str, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    async with https_server(certs) as server:
        assert _ok(await _get(terminal, server.url, ca_bundle=certs.ca_pem))
        assert len(proxy.seen) == 1
        assert proxy.seen[0].startswith("CONNECT 127.0.0.1:")
        assert _ok(await _get(terminal, server.url, ca_bundle=certs.ca_pem, trust_env=False))
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        assert _ok(await _get(terminal, server.url, ca_bundle=certs.ca_pem))
    assert len(proxy.seen) == 1


async def test_trust_env_uses_http_proxy_for_http_urls(
    terminal: str, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    outcome = await _get(terminal, "http://backend.test/x")
    assert isinstance(outcome, Success)
    assert proxy.seen == ["GET http://backend.test/x HTTP/1.1"]


# -- what a terminal cannot honour is a ConfigError naming it ---------------------------------


def test_curl_refuses_an_ssl_context_instead_of_dropping_it(certs: Certs) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca_pem))
    context.load_cert_chain(certs.client_pem)
    with pytest.raises(ConfigError, match=r"the curl terminal cannot use an ssl\.SSLContext"):
        CurlTerminal(verify=context)  # type: ignore[arg-type]


def test_aiohttp_refuses_a_socks_proxy() -> None:
    settings = HttpSettings(proxy_url="socks5://user:S3CRET@127.0.0.1:1080")
    with pytest.raises(
        ConfigError, match=r"the aiohttp terminal cannot use a socks5:// proxy"
    ) as e:
        AiohttpTerminal(settings)
    assert "S3CRET" not in str(e.value)


def test_a_socks_proxy_from_the_environment_is_refused_by_aiohttp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5h://127.0.0.1:1080")
    with pytest.raises(
        ConfigError, match=r"aiohttp terminal cannot use a socks5h:// proxy \(HTTPS_PROXY\)"
    ):
        AiohttpTerminal(HttpSettings())


def test_a_malformed_proxy_variable_names_it_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, terminal: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:S3CRET@")
    with pytest.raises(ConfigError, match=f"the {terminal} terminal: HTTPS_PROXY") as e:
        TERMINALS[terminal](HttpSettings())
    assert "S3CRET" not in str(e.value)


def test_httpx_refuses_tls_settings_it_cannot_apply_to_a_given_client(certs: Certs) -> None:
    import httpx

    settings = HttpSettings(ca_bundle=certs.ca_pem)
    with pytest.raises(ConfigError, match="cannot apply HTTP_CA_BUNDLE to the client"):
        HttpxTerminal(settings, client=httpx.AsyncClient())
    with pytest.raises(ConfigError, match="cannot apply verify to the transport"):
        HttpxTerminal(transport=httpx.MockTransport(lambda r: httpx.Response(200)), verify=False)


@pytest.mark.parametrize("name", sorted(TERMINALS))
def test_an_unloadable_client_certificate_names_the_terminal(tmp_path: Path, name: str) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(
        ConfigError, match=f"the {name} terminal cannot load the client certificate"
    ):
        TERMINALS[name](HttpSettings(client_cert=bad))


def test_an_unloadable_ca_bundle_names_the_terminal(tmp_path: Path, terminal: str) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=f"the {terminal} terminal cannot load the CA bundle"):
        TERMINALS[terminal](HttpSettings(ca_bundle=bad))


# -- the command line: --insecure/-k, --cacert, --cert, --key, --proxy -------------------------


async def _cli(*argv: str) -> tuple[int, str, str]:
    """``httprail request`` in a child process (its own event loop and interpreter: aiohttp's
    TLS transports still closing when ``asyncio.run`` ends are not this process's to collect)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "httprail.cli",
        "request",
        "--no-headers",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def test_the_command_line_takes_tls_and_proxy_flags(certs: Certs, proxy: Proxy) -> None:
    async with https_server(certs, client_cert_required=True) as server:
        url = f"{server.url}/x"
        mutual = ["--cacert", str(certs.ca_pem), "--cert", str(certs.client_cert)]
        mutual += ["--key", str(certs.client_key)]
        code, out, _ = await _cli("GET", url, *mutual)
        assert code == 0
        assert out.rstrip().endswith("ok")
        code, out, _ = await _cli("GET", url, *mutual, "--proxy", proxy.url)
        assert code == 0
        assert out.rstrip().endswith("ok")
        assert proxy.seen == [f"CONNECT {server.url.removeprefix('https://')} HTTP/1.1"]
    async with https_server(certs) as server:
        assert (await _cli("GET", server.url, "-k"))[0] == 0
        assert (await _cli("GET", server.url, "--insecure"))[0] == 0
        code, _, err = await _cli("GET", f"{server.url}/?api_key={CANARY}", "--retries", "0")
    assert code != 0
    assert err.count("\n") == 1
    assert "ConnectError" in err
    assert CANARY not in err


async def test_a_bad_proxy_flag_is_a_usage_error_that_does_not_quote_it() -> None:
    code, out, err = await _cli("GET", "http://a.test/", "--proxy", "ftp://u:S3CRET@x")
    assert code == 2
    assert "HTTP_PROXY_URL" in err
    assert "S3CRET" not in out + err


async def test_a_client_certificate_that_cannot_be_loaded_is_a_usage_error(tmp_path: Path) -> None:
    """A file that exists but is no certificate passes the flag's check and fails when the
    terminal loads it: a one-line usage error (exit 2), not a traceback."""
    not_a_cert = tmp_path / "cert.pem"
    not_a_cert.write_text("not a certificate\n")
    code, out, err = await _cli("GET", "http://127.0.0.1:1/", "--cert", str(not_a_cert))
    assert code == 2
    assert "cannot load the client certificate" in err
    assert "Traceback" not in out + err
    assert err.count("\n") == 1
