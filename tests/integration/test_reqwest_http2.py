"""The reqwest terminal's HTTP versions: HTTP/2 by ALPN over TLS unless ``http2=False``, and
HTTP/2 with prior knowledge (h2c) on ``http://`` when asked (``h2c=True``), against hypercorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import pytest

from httprail import AsyncClient, HttpSettings
from httprail.terminals import PyreqwestTerminal

from ..benchmarks import ROOT, load_benchmark

pytest.importorskip("pyreqwest")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    pytest.importorskip("hypercorn")
    pytest.importorskip("trustme")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports throughput.py
        return load_benchmark("http2")


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


@pytest.fixture
async def h2c_server() -> AsyncIterator[str]:
    """hypercorn on plain TCP (it takes HTTP/2 with prior knowledge there); answers its
    ``http_version``."""
    hypercorn_asyncio = pytest.importorskip("hypercorn.asyncio")
    from hypercorn.config import Config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    task = asyncio.create_task(hypercorn_asyncio.serve(_app, config, shutdown_trigger=stop.wait))
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            break
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    stop.set()
    await task


async def test_h2c_speaks_http2_on_plain_http_only_when_asked(h2c_server: str) -> None:
    """On ``http://``: HTTP/1.1 by default, HTTP/2 with prior knowledge with ``h2c=True``."""
    versions = {}
    for h2c in (False, True):
        terminal = PyreqwestTerminal(HttpSettings(), h2c=h2c)
        async with AsyncClient(h2c_server, plugins=[], terminal=terminal) as client:
            response = (await client.get("/")).unwrap()
        versions[h2c] = (response.http_version, response.text)
    assert versions == {False: ("HTTP/1.1", "1.1"), True: ("HTTP/2", "2")}
