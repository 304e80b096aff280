"""HTTP/2 that holds while the server rotates its connections (issue 14, finding 6).

A real hypercorn over TLS on 127.0.0.1 (``benchmarks/http2.py``'s :class:`RotatingServer`)
sends a GOAWAY and closes each connection after 200 requests, dropping the streams still in
flight, as it does after 1,000 by default. The full 10 s figures at its default come from
``python benchmarks/http2.py`` (``benchmarks/results/http2.md``). The default stack is played
on both HTTP/2 terminals: ``HttpxTerminal`` and ``PyreqwestTerminal`` (HTTP/2 by ALPN).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from returns.result import Success

from httprail import AsyncClient, HttpSettings
from httprail.terminals import CurlTerminal, HttpxTerminal

from ..benchmarks import load_http2_benchmark

pytestmark = pytest.mark.timeout(120)

ROTATE = 200  # hypercorn's default is 1,000; 64 streams die in flight at each rotation
CONCURRENCY = 64


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_http2_benchmark()


@pytest.fixture(scope="module")
def server(bench: ModuleType) -> Iterator[Any]:
    with bench.RotatingServer(ROTATE) as running:
        yield running


# the benchmark's rows: the default stack on each HTTP/2 terminal
STACKS = [
    pytest.param("httprail-h2", id="httpx"),
    pytest.param(
        "httprail-reqwest-h2",
        id="reqwest",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("pyreqwest") is None, reason="pyreqwest is not installed"
        ),
    ),
]


@pytest.mark.parametrize("stack", STACKS)
async def test_the_default_stack_over_http2_has_no_failure_while_connections_rotate(
    bench: ModuleType, server: Any, stack: str
) -> None:
    """The default stack over HTTP/2 at c=64, 4 rotations' worth of GETs (about 3 s here):
    every one succeeds while the server rotates connections every 200 requests (rotated ones
    are retried, the breaker stays closed)."""
    sample = await bench.measure(
        stack, server, concurrency=CONCURRENCY, duration=60.0, requests=ROTATE * 4
    )
    assert dict(sample.failures) == {}
    assert sample.successes == ROTATE * 4
    assert set(sample.versions) == {"HTTP/2"}
    assert sample.connections >= 3  # the server did rotate


@pytest.mark.parametrize("stack", STACKS)
async def test_a_post_is_never_processed_twice_while_connections_rotate(
    bench: ModuleType, server: Any, stack: str
) -> None:
    """POSTs during rotations: requests the server refused unprocessed are resent, the server
    never sees one request twice, and the only failures are requests it may have processed
    (``ConnectionRotatedError``, not retried for POST)."""
    sample = await bench.measure(
        stack,
        server,
        concurrency=CONCURRENCY,
        duration=60.0,
        method="POST",
        requests=ROTATE * 3,
    )
    assert sample.duplicates == 0
    assert set(sample.failures) <= {"ConnectionRotatedError"}
    assert sample.successes >= ROTATE
    assert sample.connections >= 2


async def test_http2_true_on_a_client_without_terminal_speaks_http2(server: Any) -> None:
    """``http2=True`` and no terminal: the client picks ``HttpxTerminal``, which speaks HTTP/2."""
    settings = HttpSettings(http2=True)
    async with AsyncClient(settings=settings) as client:
        assert isinstance(client.pipeline.terminal, HttpxTerminal)
    terminal = HttpxTerminal(settings, verify=server.ca)
    async with AsyncClient(server.url, settings=settings, terminal=terminal) as client:
        outcome = await client.get("/item")
    assert isinstance(outcome, Success)
    assert outcome.unwrap().http_version == "HTTP/2"


async def test_the_curl_terminal_speaks_http2_unless_told_not_to(server: Any) -> None:
    """``CurlTerminal`` honours ``http2``: HTTP/2 by ALPN when unset or true, HTTP/1.1 when
    false."""
    pytest.importorskip("curl_cffi")
    versions = {}
    for http2 in (None, True, False):
        settings = HttpSettings(http2=http2)
        terminal = CurlTerminal(settings, verify=server.ca)
        async with AsyncClient(server.url, plugins=[], settings=settings, terminal=terminal) as c:
            outcome = await c.get("/item")
        versions[http2] = outcome.unwrap().http_version
    assert versions == {None: "HTTP/2", True: "HTTP/2", False: "HTTP/1.1"}


def test_the_server_fixture_is_stopped_cleanly(bench: ModuleType) -> None:
    """The rotating server starts, answers its stats, and stops (idempotently)."""
    with bench.RotatingServer(10) as running:
        stats = running.stats()
        running.stop()
    assert stats["connections"] == 0
    assert stats["duplicates"] == 0
