"""One client, many event loops: ``asyncio.run`` per job, loops in threads, one TestClient per test.

A module-level client outlives the loop it first sent on. Each terminal follows its callers:
the pool of a loop that shuts down is closed there, one of a loop closed without shutting down
is released without it, and a loop alive in another thread gets a pool of its own. No request
fails for it, none is retried, no socket or warning is left behind.
"""

from __future__ import annotations

import asyncio
import gc
import os
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import trustme
from fastapi import FastAPI
from fastapi.testclient import TestClient
from returns.result import Failure, Success

from httprail import AsyncClient, HttpSettings, InvalidRequestError
from httprail.middleware import CircuitBreaker, Retry
from httprail.terminals import AiohttpTerminal, HttpxTerminal, MultiTerminal
from httprail.testing import ChaosServer, Reply

from ._terminals import TERMINALS as BY_KIND

pytestmark = pytest.mark.timeout(60)

Terminal = Callable[[HttpSettings], object]

TERMINALS: dict[str, Terminal] = {
    **BY_KIND,
    "multi": lambda settings: MultiTerminal(
        [AiohttpTerminal(settings), HttpxTerminal(settings)], strategy="round_robin"
    ),
}


def client_sockets(port: int) -> int:
    """Open sockets of this process connected to ``port`` on 127.0.0.1 (the client's side)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open("/proc/self/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == port and fields[9] in inodes:
                count += 1
    return count


@pytest.fixture
def server() -> Iterator[ChaosServer]:
    with ChaosServer() as chaos:
        chaos.script("/ok", Reply.json({"ok": True}))
        yield chaos


@pytest.fixture(params=sorted(TERMINALS))
def client(request: pytest.FixtureRequest, server: ChaosServer) -> Iterator[AsyncClient]:
    """A client built outside any loop, as a module-level one is, with the default stack."""
    settings = HttpSettings(backoff_base=0.01, backoff_max=0.05)
    made = AsyncClient(server.url, settings=settings, terminal=TERMINALS[request.param](settings))
    yield made
    asyncio.run(made.aclose())


async def _calls(client: AsyncClient, count: int) -> list[object]:
    outcomes = await asyncio.gather(*(client.get("/ok") for _ in range(count)))
    return [outcome.map(lambda response: response.json()) for outcome in outcomes]


def test_asyncio_run_again_and_again_reuses_one_client(
    client: AsyncClient, server: ChaosServer
) -> None:
    """Three ``asyncio.run`` on one client all succeed, each request sent once, and each loop's
    shutdown closes that loop's connections."""
    for run in range(3):
        assert asyncio.run(_calls(client, 3)) == [Success({"ok": True})] * 3
        assert server.count("/ok") == 3 * (run + 1)
        assert client_sockets(server.port) == 0


def test_a_loop_closed_without_shutdown_leaves_no_socket_and_no_warning(
    client: AsyncClient, server: ChaosServer
) -> None:
    """Loops closed by ``loop.close()`` alone (no asyncgen shutdown) have their connections
    released when the client next runs elsewhere, without a ResourceWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            loop = asyncio.new_event_loop()
            try:
                assert loop.run_until_complete(_calls(client, 2)) == [Success({"ok": True})] * 2
            finally:
                loop.close()
        # (two requests: a MultiTerminal's round robin reaches both of its backends)
        assert asyncio.run(_calls(client, 2)) == [Success({"ok": True})] * 2
        gc.collect()
    assert client_sockets(server.port) == 0
    assert [str(w.message) for w in caught] == []
    assert server.count("/ok") == 8


def test_aclose_releases_the_pool_of_a_loop_closed_without_shutdown(
    client: AsyncClient, server: ChaosServer
) -> None:
    """``aclose`` from a new loop releases the connections of a loop closed by ``close()``
    alone, without that loop and without a ResourceWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(_calls(client, 2)) == [Success({"ok": True})] * 2
        loop.close()
        assert client_sockets(server.port) >= 1
        asyncio.run(client.aclose())
        gc.collect()
    assert client_sockets(server.port) == 0
    assert [str(w.message) for w in caught] == []


def test_loops_running_at_once_in_threads_each_get_their_own_pool(
    client: AsyncClient, server: ChaosServer
) -> None:
    """Four threads, each in its own ``asyncio.run``, share one client: all 20 requests succeed,
    once each, and every pool is closed with its loop."""
    results: list[object] = []
    ready = threading.Barrier(4)

    def job() -> None:
        async def main() -> list[object]:
            ready.wait(5)  # all four loops are running before anyone sends
            return await _calls(client, 5)

        results.extend(asyncio.run(main()))

    threads = [threading.Thread(target=job) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [Success({"ok": True})] * 20
    assert server.count("/ok") == 20
    assert client_sockets(server.port) == 0


def test_aclose_closes_the_pool_of_a_loop_running_in_another_thread(server: ChaosServer) -> None:
    """``aclose`` from one loop closes the connections a loop running in another thread opened
    (on that loop), and the client refuses requests afterwards on both."""
    client = AsyncClient(server.url, plugins=[])
    background = asyncio.new_event_loop()
    thread = threading.Thread(target=background.run_forever, daemon=True)
    thread.start()
    try:
        assert asyncio.run(_calls(client, 1)) == [Success({"ok": True})]
        sent = asyncio.run_coroutine_threadsafe(_calls(client, 2), background)
        assert sent.result(10) == [Success({"ok": True})] * 2
        assert client_sockets(server.port) >= 1
        asyncio.run(client.aclose())
        assert client_sockets(server.port) == 0
        late = asyncio.run_coroutine_threadsafe(client.get("/ok"), background).result(10)
        assert isinstance(late.failure(), InvalidRequestError)
    finally:
        background.call_soon_threadsafe(background.stop)
        thread.join(10)
        background.close()


def test_aclose_closes_an_idle_loops_pool_when_that_loop_runs_again(server: ChaosServer) -> None:
    """A loop that is neither running nor closed keeps its pool while others get copies (a
    copy of a loop closed without shutdown is released at the next bind); ``aclose`` from
    another loop closes the idle loop's connections the next turn it runs."""
    client = AsyncClient(server.url, plugins=[])
    idle = asyncio.new_event_loop()
    try:
        assert idle.run_until_complete(_calls(client, 1)) == [Success({"ok": True})]
        dropped = asyncio.new_event_loop()
        assert dropped.run_until_complete(_calls(client, 1)) == [Success({"ok": True})]
        dropped.close()  # its copy's connection is released when the next loop binds
        assert asyncio.run(_calls(client, 1)) == [Success({"ok": True})]  # a copy: idle is alive
        assert client_sockets(server.port) == 1
        asyncio.run(client.aclose())
        idle.run_until_complete(asyncio.sleep(0.05))
        assert client_sockets(server.port) == 0
    finally:
        idle.close()


class _StaleLoopTransport(httpx.AsyncBaseTransport):
    """What a backend whose connection belongs to a closed loop raises, then the network."""

    def __init__(self, stale: int) -> None:
        self.stale = stale
        self.network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.stale:
            self.stale -= 1
            raise RuntimeError("Event loop is closed")
        return await self.network.handle_async_request(request)

    async def aclose(self) -> None:
        await self.network.aclose()


async def test_a_closed_loop_is_the_environments_error_not_the_upstreams(
    server: ChaosServer,
) -> None:
    """A backend answering "Event loop is closed" gives InvalidRequestError naming the loop:
    not retried, never opening the breaker (threshold 2, four such errors), and the upstream
    sees only the requests that were really sent."""
    breaker = CircuitBreaker(failure_threshold=2)
    client = AsyncClient(
        server.url,
        plugins=[Retry(max_retries=3, backoff_base=0.01), breaker],
        terminal=HttpxTerminal(transport=_StaleLoopTransport(stale=4)),
    )
    failures = [(await client.get("/ok")).failure() for _ in range(4)]
    assert all(isinstance(error, InvalidRequestError) for error in failures)
    assert all("another event loop" in str(error) for error in failures)
    assert (await client.get("/ok")).map(lambda response: response.json()) == Success({"ok": True})
    assert server.count("/ok") == 1
    key = breaker.key_of(httpx.Request("GET", server.url_for("/ok")))
    assert await breaker.state(key) == "closed"
    await client.aclose()


@pytest.fixture(scope="module")
def app_and_server() -> Iterator[tuple[FastAPI, ChaosServer]]:
    """A FastAPI app calling the upstream through one client made at import time."""
    with ChaosServer() as upstream:
        upstream.script("/ok", Reply.json({"ok": True}))
        shared = AsyncClient(upstream.url)  # the default client, as a module global would be
        app = FastAPI()

        @app.get("/proxy")
        async def proxy() -> dict[str, object]:
            outcome = await shared.get_json("/ok")
            return {
                "upstream": outcome.value_or(None),
                "error": repr(outcome.failure()) if isinstance(outcome, Failure) else None,
            }

        yield app, upstream
        asyncio.run(shared.aclose())


@pytest.mark.parametrize("test_number", [1, 2, 3])
def test_one_starlette_testclient_per_test_shares_the_module_level_client(
    app_and_server: tuple[FastAPI, ChaosServer], test_number: int
) -> None:
    """Each test's TestClient runs the app on a loop of its own; the module-level client
    follows it: the call succeeds, sent once, and the loop's connections close with it."""
    app, upstream = app_and_server
    before = upstream.count("/ok")
    with TestClient(app) as http:
        answer = http.get("/proxy")
    assert answer.json() == {"upstream": {"ok": True}, "error": None}
    assert upstream.count("/ok") == before + 1
    assert client_sockets(upstream.port) == 0


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client pools the TLS connection

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """No access log."""


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, int]]:
    """An HTTPS server on 127.0.0.1 with a certificate from a test CA: (url, CA file, port)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = httpd.server_address[1]
    yield f"https://127.0.0.1:{port}", str(ca_file), port
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
def test_a_tls_pool_of_a_loop_closed_without_shutdown_is_released(
    tls_server: tuple[str, str, int], kind: str
) -> None:
    """A TLS connection left by a loop closed with ``close()`` alone is released by ``aclose``
    from another loop (the socket under the TLS layer is closed), without a ResourceWarning."""
    url, ca_file, port = tls_server
    settings = HttpSettings()
    terminal = (AiohttpTerminal if kind == "aiohttp" else HttpxTerminal)(settings, verify=ca_file)
    client = AsyncClient(url, plugins=[], settings=settings, terminal=terminal)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(_calls(client, 1)) == [Success({"ok": True})]
        loop.close()
        assert client_sockets(port) == 1
        asyncio.run(client.aclose())
        gc.collect()
    assert client_sockets(port) == 0
    assert [str(w.message) for w in caught] == []
