"""``httprail.Client``: the synchronous client, from threads, a WSGI view, scripts and httpx.Client.

Every call returns the same ``Result`` as ``AsyncClient``'s; the requests run on the client's
own event loop thread, which a forgotten client does not leave hanging at exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from pydantic import BaseModel
from returns.result import Success

import httprail
from httprail import Client, ConfigError, HttpSettings, RequestTimeoutError, ServerStatusError
from httprail.testing import ChaosServer, Fault, Reply

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[ChaosServer]:
    with ChaosServer() as chaos:
        chaos.script("/ok", Reply.json({"ok": True}))
        yield chaos


@pytest.fixture
def client(server: ChaosServer) -> Iterator[Client]:
    with Client(server.url, settings=HttpSettings(backoff_base=0.01, backoff_max=0.02)) as made:
        yield made


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("httprail-client-")]


def test_eight_threads_at_once_share_one_client(client: Client, server: ChaosServer) -> None:
    """Eight threads call one client at the same moment, five requests each: every answer is
    the one asked for, the server saw all 40, and one loop thread served them."""
    server.route("/echo", lambda request: Reply.json({"q": request.query}))
    start = threading.Barrier(8)
    answers: dict[int, list[object]] = {}

    def work(number: int) -> None:
        start.wait(5)
        answers[number] = [
            client.get_json("/echo", params={"n": f"{number}-{i}"}) for i in range(5)
        ]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert {
        n: [outcome.map(lambda body: body["q"]) for outcome in outcomes]  # type: ignore[attr-defined]
        for n, outcomes in answers.items()
    } == {n: [Success(f"n={n}-{i}") for i in range(5)] for n in range(8)}
    assert server.count("/echo") == 40
    assert len(loop_threads()) == 1


def test_every_verb_returns_the_async_clients_results(client: Client, server: ChaosServer) -> None:
    """GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE each reach the server with their method; a
    503 comes back as Failure(ServerStatusError) after Retry's attempts."""
    server.route("/any", lambda request: Reply.json({"method": request.method}))
    for verb in ("get", "head", "options", "post", "put", "patch", "delete"):
        outcome = getattr(client, verb)("/any")
        assert outcome.map(lambda response: response.status_code) == Success(200)
    assert [r.method for r in server.requests_for("/any")] == [
        "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE",
    ]  # fmt: skip
    server.script("/down", Reply.status(503))
    error = client.get("/down").failure()
    assert isinstance(error, httprail.MaxRetriesExceededError)
    assert isinstance(error.last, ServerStatusError)


class User(BaseModel):
    id: int
    name: str


def test_get_json_decodes_into_a_model(client: Client, server: ChaosServer) -> None:
    """``get_json(model=...)`` gives the model, as AsyncClient's does."""
    server.script("/user", Reply.json({"id": 1, "name": "ada"}))
    assert client.get_json("/user", model=User) == Success(User(id=1, name="ada"))


def test_stream_reads_the_body_in_the_callers_thread(client: Client, server: ChaosServer) -> None:
    """``with client.stream(...)`` yields a Result whose response iterates synchronously; the
    connection is released on exit (the next request reuses the pool)."""
    server.script("/events", Reply.sse(["one", "two", "three"]))
    with client.stream("GET", "/events") as outcome:
        lines = [line for line in outcome.unwrap().iter_lines() if line]
    assert lines == ["data: one", "data: two", "data: three"]
    server.script("/missing", Reply.status(404))
    with client.stream("GET", "/missing") as missing:
        assert isinstance(missing.failure(), httprail.StatusError)
    assert client.get("/ok").map(lambda response: response.json()) == Success({"ok": True})


def test_a_call_that_outlasts_its_deadline_is_cancelled_on_the_loop(server: ChaosServer) -> None:
    """A caller waits no longer than the total deadline (plus a second): past it the call
    returns Failure(RequestTimeoutError, phase total) and the loop stays usable."""
    server.script("/hang", Reply.fail(Fault.HANG))
    with Client(server.url, plugins=[]) as client:
        client._wait = 0.2  # the deadline the caller waits for (normally total + 1 s)
        error = client.get("/hang").failure()
        assert isinstance(error, RequestTimeoutError)
        assert error.phase == "total"
        assert client.get("/ok").map(lambda response: response.json()) == Success({"ok": True})


# One connection, a short pool wait: a hung request left running on the loop would hold the
# only slot (for the 30 s read timeout), and the next call would fail waiting for it.
ONE_SLOT = HttpSettings(max_connections=1, max_keepalive=1, timeout_pool=2.0)


def _interrupted(call: Callable[[], object]) -> None:
    # Python's own Ctrl-C handler, for the call: a process started in the background by a
    # shell without job control inherits SIGINT ignored (POSIX), and then has none.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            call()
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)


def test_an_interrupted_caller_does_not_wedge_the_loop(server: ChaosServer) -> None:
    """Ctrl-C while waiting raises KeyboardInterrupt in the caller and cancels the request on
    the loop (its connection slot, the only one, is free again): the next call succeeds."""
    server.script("/hang", Reply.fail(Fault.HANG))
    with Client(server.url, plugins=[], settings=ONE_SLOT) as client:
        _interrupted(lambda: client.get("/hang"))
        assert client.get("/ok").map(lambda response: response.json()) == Success({"ok": True})


def test_an_interrupted_httpx_client_cancels_its_request_on_the_loop(server: ChaosServer) -> None:
    """The same over ``as_httpx_transport()``: Ctrl-C in ``httpx.Client.get`` cancels the
    request on the loop, and the next request gets the only connection slot."""
    server.script("/hang", Reply.fail(Fault.HANG))
    with (
        Client(server.url, plugins=[], settings=ONE_SLOT) as client,
        httpx.Client(transport=client.as_httpx_transport(), base_url=server.url) as http,
    ):
        _interrupted(lambda: http.get("/hang"))
        assert http.get("/ok").json() == {"ok": True}


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


def test_a_wsgi_view_calls_the_upstream_through_a_module_level_client(
    server: ChaosServer,
) -> None:
    """A Flask/Django-style sync view (stdlib WSGI, a thread per request) shares one Client:
    four concurrent page loads each get the upstream's answer."""
    shared = Client(server.url)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        outcome = shared.get("/ok")
        body = outcome.map(lambda response: response.content).value_or(b"upstream failed")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    wsgi = make_server("127.0.0.1", 0, app, _ThreadingWSGIServer, _QuietHandler)
    serving = threading.Thread(target=wsgi.serve_forever, daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{wsgi.server_port}/"
        pages: list[httpx.Response] = []
        loads = [threading.Thread(target=lambda: pages.append(httpx.get(url))) for _ in range(4)]
        for load in loads:
            load.start()
        for load in loads:
            load.join(30)
        assert [page.json() for page in pages] == [{"ok": True}] * 4
        assert server.count("/ok") == 4
    finally:
        wsgi.shutdown()
        wsgi.server_close()
        shared.close()


def test_a_client_never_closed_exits_cleanly(server: ChaosServer) -> None:
    """A script that uses a Client and exits without closing it: exit code 0, nothing on
    stderr (warnings shown), and it does not hang."""
    script = textwrap.dedent(
        f"""
        import httprail
        client = httprail.Client({server.url!r})
        print(client.get("/ok").unwrap().json())
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "{'ok': True}\n")


def test_httpx_client_runs_over_the_sync_clients_transport(
    client: Client, server: ChaosServer
) -> None:
    """``httpx.Client(transport=client.as_httpx_transport())`` sends through the chain, reads
    plain and streamed bodies."""
    server.script("/events", Reply.sse(["a", "b"]))
    with httpx.Client(transport=client.as_httpx_transport(), base_url=server.url) as http:
        assert http.get("/ok").json() == {"ok": True}
        with http.stream("GET", "/events") as streamed:
            assert [line for line in streamed.iter_lines() if line] == ["data: a", "data: b"]
        assert http.post("/ok", content=iter([b"x", b"y"])).status_code == 200
    assert server.requests_for("/ok")[-1].body == b"xy"


def test_httpx_client_over_an_async_transport_is_a_clear_config_error(server: ChaosServer) -> None:
    """An AsyncClient's transport under httpx.Client is a ConfigError naming the fix."""
    transport = httprail.AsyncClient(server.url).as_httpx_transport()
    refused = r"httprail\.Client\(\.\.\.\)\.as_httpx_transport"
    with pytest.raises(ConfigError, match=refused), httpx.Client(transport=transport):
        pass  # pragma: no cover - entering refuses
    with pytest.raises(ConfigError, match=r"httpx\.AsyncClient"):
        httpx.Client(transport=transport).get(server.url_for("/ok"))


def test_a_closed_client_refuses_calls(server: ChaosServer) -> None:
    """After ``close()`` a call is a ConfigError (the loop is gone), and closing twice is fine;
    its repr, AsyncClient and metrics (of the one call made) remain readable."""
    client = Client(server.url)
    assert client.get("/ok").map(lambda response: response.status_code) == Success(200)
    client.close()
    client.close()
    with pytest.raises(ConfigError, match="closed"):
        client.get("/ok")
    assert repr(client).startswith("Client(")
    assert isinstance(client.async_client, httprail.AsyncClient)
    assert client.metrics()[server.url].requests == 1


def test_a_client_closed_before_any_call_starts_no_thread(server: ChaosServer) -> None:
    """Closing an unused client starts no loop thread (and leaves no coroutine unawaited)."""
    before = len(loop_threads())
    client = Client(server.url)
    client.close()
    assert client._runner.thread is None  # a thread started and joined would leave the count
    assert len(loop_threads()) == before


def test_calling_the_client_from_its_own_loop_is_a_config_error(client: Client) -> None:
    """A stage or callback on the client's loop that calls the sync client would deadlock: it
    gets a ConfigError instead."""

    async def inside() -> object:
        try:
            return client.get("/ok")
        except ConfigError as exc:
            return exc

    assert client.get("/ok").map(lambda response: response.status_code) == Success(200)
    future = client._runner.submit(inside())
    assert isinstance(future.result(10), ConfigError)
