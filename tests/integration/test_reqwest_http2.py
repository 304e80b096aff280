"""The reqwest terminal's HTTP versions: HTTP/2 by ALPN over TLS unless ``http2=False``, and
HTTP/2 with prior knowledge (h2c) on ``http://`` when asked (``h2c=True``), against hypercorn."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from httprail import AsyncClient, ConnectError, HttpSettings
from httprail.terminals import PyreqwestTerminal

from ..benchmarks import load_http2_benchmark

pytest.importorskip("pyreqwest")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_http2_benchmark()


@pytest.fixture(scope="module")
def tls_server(bench: ModuleType) -> Iterator[Any]:
    with bench.RotatingServer(1000) as running:
        yield running


async def test_http2_by_alpn_over_tls_unless_told_not_to(tls_server: Any) -> None:
    """Over TLS: HTTP/2 when ``http2`` is unset or true, HTTP/1.1 when false."""
    versions = {}
    for http2 in (None, True, False):
        settings = HttpSettings(http2=http2)
        terminal = PyreqwestTerminal(settings, verify=tls_server.ca)
        async with AsyncClient(
            tls_server.url, plugins=[], settings=settings, terminal=terminal
        ) as client:
            outcome = await client.get("/item")
        versions[http2] = outcome.unwrap().http_version
    assert versions == {None: "HTTP/2", True: "HTTP/2", False: "HTTP/1.1"}


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        return
    body = scope["http_version"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def _hypercorn(cert: str | None = None, key: str | None = None) -> AsyncIterator[str]:
    """hypercorn in this loop, answering its ``http_version``: over TLS (HTTP/2 and HTTP/1.1
    by ALPN) with ``cert``/``key``, else on plain TCP (HTTP/2 with prior knowledge there)."""
    hypercorn_asyncio = pytest.importorskip("hypercorn.asyncio")
    from hypercorn.config import Config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    if cert is not None:
        config.certfile, config.keyfile = cert, key
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    task = asyncio.create_task(hypercorn_asyncio.serve(_app, config, shutdown_trigger=stop.wait))
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            break
        await asyncio.sleep(0.02)
    try:
        yield f"{'http' if cert is None else 'https'}://127.0.0.1:{port}"
    finally:
        stop.set()
        await task


@pytest.fixture
async def h2c_server() -> AsyncIterator[str]:
    async with _hypercorn() as url:
        yield url


async def test_h2c_speaks_http2_on_plain_http_only_when_asked(h2c_server: str) -> None:
    """On ``http://``: HTTP/1.1 by default, HTTP/2 with prior knowledge with ``h2c=True``."""
    versions = {}
    for h2c in (False, True):
        terminal = PyreqwestTerminal(HttpSettings(), h2c=h2c)
        async with AsyncClient(h2c_server, plugins=[], terminal=terminal) as client:
            response = (await client.get("/")).unwrap()
        versions[h2c] = (response.http_version, response.text)
    assert versions == {False: ("HTTP/1.1", "1.1"), True: ("HTTP/2", "2")}


def _self_signed(folder: Path, *, ca: bool) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (``ca``: marked as a CA, as
    ``openssl req -x509`` makes it with OpenSSL's default configuration)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, private = folder / f"cert-{ca}.pem", folder / f"key-{ca}.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert), str(private)


async def _version(url: str, settings: HttpSettings) -> Any:
    terminal = PyreqwestTerminal(settings)
    async with AsyncClient(url, plugins=[], settings=settings, terminal=terminal) as client:
        return await client.get("/")


async def test_http_ca_bundle_trusts_a_self_signed_certificate_over_http2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTP_CA_BUNDLE`` naming a self-signed certificate (CA:FALSE) is all it takes: HTTP/2
    by ALPN, or HTTP/1.1 with ``HTTP_HTTP2=false``; without it the certificate is refused."""
    cert, key = _self_signed(tmp_path, ca=False)
    async with _hypercorn(cert, key) as url:
        untrusted = await _version(url, HttpSettings(trust_env=False))
        monkeypatch.setenv("HTTP_CA_BUNDLE", cert)
        over_h2 = (await _version(url, HttpSettings())).unwrap()
        monkeypatch.setenv("HTTP_HTTP2", "false")
        over_h1 = (await _version(url, HttpSettings())).unwrap()
    assert type(untrusted.failure()) is ConnectError
    assert (over_h2.http_version, over_h2.text) == ("HTTP/2", "2")
    assert (over_h1.http_version, over_h1.text) == ("HTTP/1.1", "1.1")


async def test_a_self_signed_ca_certificate_is_refused_by_rustls_with_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-signed certificate marked CA:TRUE (``openssl req -x509``'s default) is a
    ConnectError on reqwest even when trusted, naming the fix; ``HTTP_VERIFY=false`` still
    connects over HTTP/2 (documented difference: OpenSSL-based terminals accept it)."""
    cert, key = _self_signed(tmp_path, ca=True)
    async with _hypercorn(cert, key) as url:
        refused = await _version(url, HttpSettings(ca_bundle=cert))
        monkeypatch.setenv("HTTP_VERIFY", "false")
        unverified = (await _version(url, HttpSettings())).unwrap()
    error = refused.failure()
    assert type(error) is ConnectError
    assert "CaUsedAsEndEntity" in str(error)
    assert "basicConstraints=critical,CA:FALSE" in str(error)
    assert unverified.http_version == "HTTP/2"
