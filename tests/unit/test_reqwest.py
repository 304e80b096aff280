"""The reqwest terminal's pieces: optional import, settings it refuses, the exception table,
the response head, and the wait at exit after a close."""

from __future__ import annotations

import asyncio
import ssl
import sys
import traceback
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from httprail import ConfigError, HttpSettings
from httprail.terminals import PyreqwestTerminal, map_exception
from httprail.terminals import _reqwest as reqwest_module
from httprail.terminals._reqwest import MAX_HEAD, _head, _identity, _read
from httprail.terminals._reqwest_errors import causes_of, translate

exceptions = pytest.importorskip("pyreqwest.exceptions")


def test_a_missing_pyreqwest_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without pyreqwest, building the terminal says ``pip install 'httprail[reqwest]'``."""
    monkeypatch.setitem(sys.modules, "pyreqwest.client", None)
    with pytest.raises(ConfigError, match=r"pip install 'httprail\[reqwest\]'"):
        PyreqwestTerminal()


def test_h2c_with_http2_false_is_a_config_error() -> None:
    """``h2c=True`` beside ``http2=False`` is refused, naming both."""
    with pytest.raises(ConfigError, match=r"h2c=True.*http2=False"):
        PyreqwestTerminal(HttpSettings(http2=False), h2c=True)


def test_an_ssl_context_is_a_config_error() -> None:
    """reqwest does its own TLS: an ``SSLContext`` would be dropped, so it is refused."""
    with pytest.raises(ConfigError, match=r"reqwest terminal cannot use an ssl\.SSLContext"):
        PyreqwestTerminal(verify=ssl.create_default_context())


def test_repr_says_what_it_speaks() -> None:
    """The repr names the HTTP/2 and h2c choices."""
    assert repr(PyreqwestTerminal(HttpSettings(http2=False))) == (
        "PyreqwestTerminal(http2=False, h2c=False)"
    )
    assert repr(PyreqwestTerminal(h2c=True)) == "PyreqwestTerminal(http2=True, h2c=True)"


def error(kind: str, *causes: str) -> Any:
    return getattr(exceptions, kind)(kind, {"causes": [{"message": c} for c in causes]})


SENDING = "error sending request for url (http://api.test/x?token=s3cret)"


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (error("ConnectError", SENDING, "client error (Connect)", "tcp connect error"), "Connect"),
        (error("ConnectTimeoutError", SENDING, "client error (Connect)"), "ConnectTimeout"),
        (error("ConnectTimeoutError", SENDING, "operation timed out"), "ReadTimeout"),
        (error("ReadTimeoutError", "operation timed out"), "ReadTimeout"),
        (error("WriteTimeoutError", "operation timed out"), "WriteTimeout"),
        (error("PoolTimeoutError", "operation timed out"), "PoolTimeout"),
        (error("ConnectError", SENDING, "Connection reset by peer (os error 104)"), "Read"),
        (error("WriteError", "Broken pipe (os error 32)"), "Write"),
        (error("ConnectError", SENDING, "connection closed before message completed"), "Remote"),
        (error("DecodeError", SENDING, "invalid HTTP version parsed"), "Remote"),
        (error("ReadError", "unexpected EOF during chunk size line"), "Remote"),
        (error("BodyDecodeError", "end of file before message length reached"), "Remote"),
        (
            error("ReadError", "connection error", "http2 error: connection error detected: x"),
            "Remote",
        ),
        (error("RequestError", SENDING, "http2 error: stream error detected: x"), "Remote"),
        (error("ReadError", "something else"), "Read"),
        (error("WriteError", "something else"), "Write"),
        (error("NetworkError", "something else"), "Read"),
        (error("RedirectError", "too many"), "TooManyRedirects"),
        (error("BuilderError", "URL scheme is not allowed"), "UnsupportedProtocol"),
        (error("BuilderError", "invalid header value"), "LocalProtocol"),
        (error("ClientClosedError", "closed"), "Transport"),
        (error("RequestPanicError"), "Transport"),
    ],
)
def test_each_pyreqwest_error_becomes_the_httpx_error_of_its_fault(
    raised: Exception, expected: str
) -> None:
    """reqwest's cause chain decides: connect, timeout phase, reset, broken pipe, framing."""
    translated = translate(raised)
    names = {"Connect": "ConnectError", "Read": "ReadError", "Write": "WriteError"}
    name = names.get(expected, expected if "Timeout" in expected else expected + "Error")
    if expected in ("TooManyRedirects", "UnsupportedProtocol"):
        name = expected
    elif expected == "Remote":
        name = "RemoteProtocolError"
    assert type(translated).__name__ == name
    assert translated.__cause__ is raised
    assert "s3cret" not in str(translated)  # the URL cause is left out of the message


def test_the_message_keeps_what_reqwest_said_once() -> None:
    """The message is pyreqwest's, then each distinct cause, without the URL or the layer."""
    raised = error("ReadError", SENDING, "client error (SendRequest)", "reset", "reset")
    assert str(translate(raised)) == "ReadError: reset"
    assert causes_of(ValueError("no details")) == []


def test_a_terminal_maps_only_pyreqwest_errors() -> None:
    """Other exceptions are left to the common mapping; a pyreqwest one is translated."""
    terminal = PyreqwestTerminal()
    request = httpx.Request("GET", "http://api.test/")
    assert terminal._translate(ValueError("x")) is None
    assert terminal._translate(httpx.ReadError("x")) is None
    assert type(terminal.translate(ValueError("x"))) is httpx.TransportError
    assert type(terminal.map_error(error("ReadTimeoutError", "t"), request)).__name__ == (
        "RequestTimeoutError"
    )
    mapped = map_exception(translate(error("ReadError", "reset")), request)
    assert type(mapped).__name__ == "ReadError"


class FakeHeaders:
    """What a pyreqwest ``HeaderMap`` offers, with a value it cannot read as ``str``."""

    def __init__(self, pairs: list[tuple[str, str | None]]) -> None:
        self.pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        if any(value is None for _, value in self.pairs):
            raise ValueError("failed to convert header to a str")
        return [(name, value) for name, value in self.pairs if value is not None]

    def keys(self) -> list[str]:
        return [name for name, _ in self.pairs]

    def getall(self, name: str) -> list[str]:
        values = [value for key, value in self.pairs if key == name]
        if None in values:
            raise ValueError("failed to convert header to a str")
        return [value for value in values if value is not None]


def test_the_head_comes_as_byte_pairs_in_order() -> None:
    """Headers are handed over as ASCII byte pairs, repeated ones in order."""
    headers = FakeHeaders([("set-cookie", "a=1"), ("x", "y"), ("set-cookie", "b=2")])
    assert _head(headers) == [(b"set-cookie", b"a=1"), (b"x", b"y"), (b"set-cookie", b"b=2")]


def test_a_header_value_pyreqwest_cannot_read_is_a_protocol_error_naming_it() -> None:
    """A value that is not ASCII cannot be handed over: a ProtocolError names the header."""
    with pytest.raises(httpx.RemoteProtocolError, match="'x-message'"):
        _head(FakeHeaders([("x-ok", "1"), ("x-message", None)]))


def test_a_head_over_the_limit_is_a_protocol_error() -> None:
    """A head larger than ``MAX_HEAD`` bytes is refused."""
    with pytest.raises(httpx.RemoteProtocolError, match="larger than"):
        _head(FakeHeaders([("x-huge", "a" * MAX_HEAD)]))


def test_the_client_certificate_and_key_become_one_pem(tmp_path: Path) -> None:
    """reqwest takes the identity as one PEM: the certificate, then the key."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(b"CERT\n\n")
    key.write_bytes(b"KEY\n")
    assert _identity(cert, key) == b"CERT\nKEY\n"
    assert _identity(cert, None) == b"CERT\n\n"
    assert _identity(None, None) is None
    with pytest.raises(ConfigError, match="cannot read HTTP_CA_BUNDLE"):
        _read(tmp_path / "missing.pem", "HTTP_CA_BUNDLE")


def test_an_exit_soon_after_a_close_waits_for_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit waits what is left of ``SETTLE`` since the last close, and nothing later."""
    registered: list[Any] = []
    slept: list[float] = []
    now = [100.0]
    monkeypatch.setattr(reqwest_module, "_closed_at", [])
    monkeypatch.setattr(reqwest_module.atexit, "register", registered.append)
    monkeypatch.setattr(reqwest_module.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(reqwest_module.time, "sleep", slept.append)
    reqwest_module._settle()  # nothing closed: no wait
    reqwest_module._closed_now()
    reqwest_module._closed_now()
    assert registered == [reqwest_module._settle]  # registered once
    now[0] += 0.04
    reqwest_module._settle()
    assert slept == [pytest.approx(reqwest_module.SETTLE - 0.04)]
    now[0] += 1.0
    reqwest_module._settle()
    assert len(slept) == 1


def test_a_discarded_client_counts_as_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client dropped without its loop (a closed loop) is settled at exit like a closed one."""
    marks: list[int] = []
    monkeypatch.setattr(reqwest_module, "_closed_now", lambda: marks.append(1))
    terminal = PyreqwestTerminal()
    terminal._discard_backend()
    assert marks == []
    terminal._client = terminal._build()
    terminal._discard_backend()
    assert marks == [1]
    assert terminal._client is None


async def _stubborn() -> str:
    """An await that returns a result although its task was cancelled, as pyreqwest's futures
    sometimes do when the cancel and the answer meet."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        return "answer"
    return "slept"  # pragma: no cover - cancelled first


async def test_a_cancel_pyreqwest_swallows_still_reaches_the_caller() -> None:
    """Every await of pyreqwest's goes through ``_resisting``: a result that comes back from a
    cancelled await is dropped and the caller gets ``CancelledError``."""
    task = asyncio.create_task(reqwest_module._resisting(_stubborn()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await reqwest_module._resisting(asyncio.sleep(0, "ready")) == "ready"


class _StubbornSend:
    """pyreqwest's client, request builder and streamed request in one, scripted: the head
    comes at once or stubbornly, the body's ``bytes()`` stubbornly (each stubborn await
    returns although its task was cancelled)."""

    def __init__(self, stubborn_head: bool) -> None:
        self.stubborn_head = stubborn_head
        self.exits = 0
        # the response's side: status, version, headers and body reader
        self.status = 200
        self.version = "HTTP/1.1"
        self.head = FakeHeaders([("content-length", "2")])
        self.body_reader = self

    def request(self, method: str, url: str) -> _StubbornSend:
        return self

    def headers(self, pairs: object) -> _StubbornSend:
        return self

    def build_streamed(self) -> _StubbornSend:
        return self

    async def __aenter__(self) -> _Answer:
        if self.stubborn_head:
            await _stubborn()
        return _Answer(self)

    async def __aexit__(self, *exc: object) -> None:
        self.exits += 1

    async def bytes(self) -> bytes:
        await _stubborn()
        return b"{}"


class _Answer:
    """The streamed request's response."""

    def __init__(self, send: _StubbornSend) -> None:
        self.status, self.version, self.body_reader = send.status, send.version, send
        self.headers = send.head


@pytest.mark.parametrize("stubborn_head", [False, True])
async def test_a_cancel_swallowed_at_the_head_or_the_body_read_with_it_reaches_the_caller(
    stubborn_head: bool,
) -> None:
    """The terminal reads a plain answer's body with its head; a cancel pyreqwest swallows at
    either await still ends the caller's task with ``CancelledError``, and the request is
    closed once."""
    terminal = PyreqwestTerminal()
    fake = _StubbornSend(stubborn_head)
    terminal._client = fake  # type: ignore[assignment]
    task = asyncio.create_task(terminal.send(httpx.Request("GET", "http://example.test/")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.exits == 1
    assert terminal._gate.active == 0


_HEAD_NAMES = ["content-length", "content-encoding", "content-type", "x-a", "date"]


@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(_HEAD_NAMES),
            st.sampled_from(["0", "12", "104", "99999999", "1, 2", "x", "", "gzip"]),
        ),
        max_size=5,
    ),
    limit=st.sampled_from([0, 50, 104, 10**6]),
)
def test_a_converted_head_reads_its_framing_as_the_response_headers_do(
    pairs: list[tuple[str, str]], limit: int
) -> None:
    """The head's encoded flag and declared length give what the response's headers give."""
    from httprail.terminals._limits import BodyTooLarge, declared_fit
    from httprail.terminals._reqwest import _Head

    head = _Head.of(_head(FakeHeaders(list(pairs))))
    response = httpx.Response(200, headers=[(n.encode(), v.encode()) for n, v in pairs])
    response.request = httpx.Request("GET", "http://example.test/")
    assert head.items == list(response.headers._list)
    assert head.encoded == ("content-encoding" in response.headers)
    try:
        expected: bool | type[BodyTooLarge] = declared_fit(response, limit)
    except BodyTooLarge:
        expected = BodyTooLarge
    try:
        got: bool | type[BodyTooLarge] = head.fits(limit, response)
    except BodyTooLarge:
        got = BodyTooLarge
    assert got == expected


def test_a_head_that_repeats_the_last_one_is_not_converted_again() -> None:
    """The last head is kept by its pyreqwest pairs: the same pairs give the same object,
    other pairs a new one, and a value that cannot be read is still a ProtocolError."""
    terminal = PyreqwestTerminal()
    first = terminal._head_of(FakeHeaders([("x-a", "1"), ("content-length", "2")]))
    assert terminal._head_of(FakeHeaders([("x-a", "1"), ("content-length", "2")])) is first
    other = terminal._head_of(FakeHeaders([("x-a", "2"), ("content-length", "2")]))
    assert other is not first
    assert other.items == [(b"x-a", b"x-a", b"2"), (b"content-length", b"content-length", b"2")]
    with pytest.raises(httpx.RemoteProtocolError, match="'x-message'"):
        terminal._head_of(FakeHeaders([("x-a", "2"), ("x-message", None)]))


async def test_a_request_pyreqwest_refuses_to_build_is_a_local_error_that_does_not_quote_it() -> (
    None
):
    """pyreqwest's own refusal of a header value (a plain ``ValueError``) quotes the value; the
    terminal gives ``httpx.LocalProtocolError`` without it, and without that cause. (The gate in
    front refuses such a value first; this is the terminal alone.)"""
    secret = "sk-live-canary-0123"
    terminal = PyreqwestTerminal()
    request = httpx.Request("GET", "http://127.0.0.1:1/", headers={"X-Key": f"{secret}\x01"})
    try:
        with pytest.raises(httpx.LocalProtocolError) as raised:
            await terminal._open(request)
    finally:
        await terminal.aclose()
    assert "refused the request's method, URL or headers" in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert secret not in "".join(traceback.format_exception(raised.value))
    assert map_exception(raised.value, request).__class__.__name__ == "InvalidRequestError"


def _self_signed(key: Any, algorithm: Any = None) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``key`` (signed with ``algorithm``: ``None`` for Ed keys)
    and the key, as PEM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client.test")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, algorithm)
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def test_a_ca_bundle_rustls_would_skip_is_a_config_error() -> None:
    """OpenSSL's ``TRUSTED CERTIFICATE`` form loads in OpenSSL but rustls skips it (every TLS
    request would then fail as an unknown issuer): refused when the terminal is built, as is a
    bundle without a certificate; a plain bundle is taken."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    client = pytest.importorskip("pyreqwest.client")
    cert, _ = _self_signed(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    trusted = cert.replace(b"BEGIN CERTIFICATE", b"BEGIN TRUSTED CERTIFICATE").replace(
        b"END CERTIFICATE", b"END TRUSTED CERTIFICATE"
    )
    for bundle in (trusted, cert + trusted, b"# no certificate here\n"):
        with pytest.raises(ConfigError, match=r"only '-----BEGIN CERTIFICATE-----' blocks"):
            reqwest_module._check_pems(client, bundle, None)
    reqwest_module._check_pems(client, cert, None)


def test_a_client_key_rustls_cannot_use_is_a_config_error_naming_the_settings(
    tmp_path: Path,
) -> None:
    """An Ed448 key loads in OpenSSL, rustls refuses it: a ``ConfigError`` naming
    ``HTTP_CLIENT_CERT`` / ``HTTP_CLIENT_KEY`` when the terminal is built (it was an
    ``InvalidRequestError`` on every request); an Ed25519 one is taken."""
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

    for key, usable in (
        (ed448.Ed448PrivateKey.generate(), False),
        (ed25519.Ed25519PrivateKey.generate(), True),
    ):
        cert, pem = _self_signed(key)
        cert_file, key_file = tmp_path / "client.crt", tmp_path / "client.key"
        cert_file.write_bytes(cert)
        key_file.write_bytes(pem)
        settings = HttpSettings(client_cert=str(cert_file), client_key=str(key_file))
        if usable:
            assert repr(PyreqwestTerminal(settings)).startswith("PyreqwestTerminal(")
        else:
            with pytest.raises(ConfigError, match="HTTP_CLIENT_CERT / HTTP_CLIENT_KEY"):
                PyreqwestTerminal(settings)
