"""The fault server itself: scripts, recording, faults and lifecycle, checked with raw sockets and
plain httpx so its behaviour does not depend on httprail."""

from __future__ import annotations

import json
import math
import socket
import time

import httpx
import pytest

from httprail.testing import ChaosServer, Fault, Reply, TokenBucket


def raw_exchange(server: ChaosServer, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_script_plays_in_order_then_repeats_the_last_reply(chaos_server: ChaosServer) -> None:
    chaos_server.script("/s", Reply.status(503), Reply.json({"n": 2}))
    with httpx.Client(base_url=chaos_server.url) as client:
        statuses = [client.get("/s").status_code for _ in range(4)]
    assert statuses == [503, 200, 200, 200]


def test_a_script_can_cycle(chaos_server: ChaosServer) -> None:
    chaos_server.script("/c", Reply.status(500), Reply.status(201), repeat_last=False)
    with httpx.Client(base_url=chaos_server.url) as client:
        assert [client.get("/c").status_code for _ in range(4)] == [500, 201, 500, 201]


def test_unscripted_paths_answer_ok_and_rescripting_restarts(chaos_server: ChaosServer) -> None:
    with httpx.Client(base_url=chaos_server.url) as client:
        assert client.get("/anything").json() == {"ok": True}
        chaos_server.script("/x", Reply.status(418))
        assert client.get("/x").status_code == 418
        chaos_server.script("/x", Reply.status(202))
        assert client.get("/x").status_code == 202


def test_every_request_is_recorded_with_what_a_test_asserts_on(chaos_server: ChaosServer) -> None:
    with httpx.Client(base_url=chaos_server.url) as client:
        client.post("/r?a=1", json={"k": "v"}, headers={"X-Trace": "t1"})
        client.get("/r")
    first, second = chaos_server.requests_for("/r")
    assert (first.method, first.path, first.query) == ("POST", "/r", "a=1")
    assert first.header("X-TRACE") == "t1"
    assert first.header("missing") is None
    assert json.loads(first.body) == {"k": "v"}
    assert second.time >= first.time
    assert first.connection_id == second.connection_id  # keep-alive reused the connection
    assert chaos_server.count() == 2
    assert chaos_server.count("/other") == 0
    chaos_server.reset()
    assert chaos_server.requests == []


def test_chunked_uploads_are_decoded(chaos_server: ChaosServer) -> None:
    def body() -> object:
        yield b"hello "
        yield b"world"

    with httpx.Client(base_url=chaos_server.url) as client:
        client.post("/up", content=body())  # type: ignore[arg-type]
    (seen,) = chaos_server.requests_for("/up")
    assert seen.header("transfer-encoding") == "chunked"
    assert seen.body == b"hello world"


def test_head_gets_no_body(chaos_server: ChaosServer) -> None:
    chaos_server.script("/h", Reply.json({"big": "x" * 100}))
    with httpx.Client(base_url=chaos_server.url) as client:
        response = client.head("/h")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 100


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nbroken header line\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: many\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n", b"413"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
    ],
    ids=["oversize-head", "bad-request-line", "bad-header", "bad-length", "negative-length",
         "huge-length", "bad-chunk"],
)  # fmt: skip
def test_malformed_requests_get_an_error_status(
    chaos_server: ChaosServer, payload: bytes, status: bytes
) -> None:
    answer = raw_exchange(chaos_server, payload)
    assert answer.split(b" ")[1] == status
    assert chaos_server.count() == 0


def test_connection_close_is_honoured(chaos_server: ChaosServer) -> None:
    answer = raw_exchange(chaos_server, b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in answer.lower()


def test_sse_events_then_a_clean_end(chaos_server: ChaosServer) -> None:
    chaos_server.script("/sse", Reply.sse(["one", "two\nlines"], event_delay=0.01))
    with httpx.Client(base_url=chaos_server.url) as client:
        response = client.get("/sse")
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text == "data: one\n\ndata: two\ndata: lines\n\n"


def test_sse_dropped_midway_breaks_the_connection(chaos_server: ChaosServer) -> None:
    chaos_server.script("/sse", Reply.sse(["a", "b", "c"], drop_after=2))
    received: list[str] = []

    def read_all() -> None:
        with httpx.Client(base_url=chaos_server.url) as client, client.stream("GET", "/sse") as r:
            received.extend(r.iter_text())

    with pytest.raises(httpx.RemoteProtocolError):
        read_all()
    assert "".join(received) == "data: a\n\ndata: b\n\n"


def test_drop_after_every_event_still_breaks(chaos_server: ChaosServer) -> None:
    chaos_server.script("/sse", Reply.sse(["a"], drop_after=1))
    with (
        httpx.Client(base_url=chaos_server.url) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get("/sse")


def test_slow_replies_wait(chaos_server: ChaosServer) -> None:
    chaos_server.script("/slow", Reply.slow(0.2))
    start = time.monotonic()
    with httpx.Client(base_url=chaos_server.url) as client:
        assert client.get("/slow").status_code == 200
    assert time.monotonic() - start >= 0.2


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.RESET, httpx.ReadError),
        (Fault.CLOSE, httpx.RemoteProtocolError),
        (Fault.GARBAGE, httpx.RemoteProtocolError),
        (Fault.TRUNCATE, httpx.RemoteProtocolError),
        (Fault.HANG, httpx.ReadTimeout),
        (Fault.HANG_BODY, httpx.ReadTimeout),
    ],
)
def test_each_fault_breaks_plain_httpx_the_expected_way(
    chaos_server: ChaosServer, fault: Fault, error: type[Exception]
) -> None:
    chaos_server.script("/f", Reply.fail(fault))
    with httpx.Client(base_url=chaos_server.url, timeout=0.2) as client, pytest.raises(error):
        client.get("/f")


def test_random_failures_are_seeded_and_near_the_ratio(chaos_server: ChaosServer) -> None:
    def run(seed: int) -> list[int]:
        chaos_server.script_random("/r", fail_ratio=0.3, seed=seed)
        with httpx.Client(base_url=chaos_server.url) as client:
            return [client.get("/r").status_code for _ in range(200)]

    first, again = run(7), run(7)
    assert first == again
    assert 40 <= first.count(503) <= 80


def test_route_answers_with_a_function_of_the_request(chaos_server: ChaosServer) -> None:
    chaos_server.route("/echo", lambda r: Reply.json({"q": r.query}, status=207))
    with httpx.Client(base_url=chaos_server.url) as client:
        response = client.get("/echo?x=1")
    assert (response.status_code, response.json()) == (207, {"q": "x=1"})


def test_a_route_may_ask_the_server_what_it_has_seen(chaos_server: ChaosServer) -> None:
    # The function runs while the server records the request; it must not deadlock.
    chaos_server.route("/nth", lambda r: Reply.json({"seen": chaos_server.count("/nth")}))
    with httpx.Client(base_url=chaos_server.url, timeout=5) as client:
        seen = [client.get("/nth").json()["seen"] for _ in range(3)]
    assert seen == [1, 2, 3]


def test_status_reply_carries_retry_headers(chaos_server: ChaosServer) -> None:
    chaos_server.script(
        "/l", Reply.status(429, retry_after="3", retry_after_ms="2500", headers={"X-A": "b"})
    )
    with httpx.Client(base_url=chaos_server.url) as client:
        response = client.get("/l")
    assert (response.headers["retry-after"], response.headers["retry-after-ms"]) == ("3", "2500")
    assert response.headers["x-a"] == "b"
    assert response.reason_phrase == "Too Many Requests"


def test_unknown_status_codes_still_form_a_status_line(chaos_server: ChaosServer) -> None:
    chaos_server.script("/odd", Reply.status(599))
    with httpx.Client(base_url=chaos_server.url) as client:
        assert client.get("/odd").status_code == 599


def test_bad_scripts_are_refused(chaos_server: ChaosServer) -> None:
    with pytest.raises(ValueError, match="at least one reply"):
        chaos_server.script("/x")
    with pytest.raises(TypeError, match="Reply"):
        chaos_server.script("/x", 503)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fail_ratio"):
        chaos_server.script_random("/x", fail_ratio=1.5)


def test_lifecycle_is_idempotent_and_stop_drops_hung_connections() -> None:
    server = ChaosServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    assert server.start() is server.start()
    server.script("/hang", Reply.fail(Fault.HANG))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\n\r\n")
        deadline = time.monotonic() + 5
        while server.count("/hang") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 2
        assert sock.recv(10) == b""  # the hung connection was closed by stop()
    server.stop()


def test_a_busy_port_is_reported() -> None:
    with ChaosServer() as first, pytest.raises(OSError, match="in use"):
        ChaosServer(port=first.port).start()


async def test_async_context_manager() -> None:
    async with ChaosServer() as server, httpx.AsyncClient() as client:
        response = await client.get(server.url_for("ping"))
        assert response.status_code == 200
        assert server.requests_for("/ping")[0].method == "GET"


def test_a_token_bucket_admits_its_burst_then_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(10.0, burst=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.1  # one token's worth
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 10.0  # refills up to the burst, not beyond
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    assert (bucket.taken, bucket.refused) == (5, 3)


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, None), (-1, None), (math.inf, None), (10, 0.5)], ids=str
)
def test_a_token_bucket_refuses_a_bad_capacity(rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError, match=r"^(rate|burst) must be"):
        TokenBucket(rate, burst)


def test_a_rate_limited_path_answers_429_with_retry_after_above_its_capacity(
    chaos_server: ChaosServer,
) -> None:
    bucket = chaos_server.script_rate_limited("/limited", rate=1.0, burst=2, retry_after="3")
    with httpx.Client(base_url=chaos_server.url) as client:
        answers = [client.get("/limited") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert answers[2].headers["retry-after"] == "3"
    assert (bucket.taken, bucket.refused) == (2, 2)


def test_a_client_closing_mid_event_stream_is_recorded_within_a_few_milliseconds(
    chaos_server: ChaosServer,
) -> None:
    """closed_at(connection_id) says when a client left an SSE reply, seen between events
    (event_delay 1 s) rather than at the next write; None while the connection is open."""
    chaos_server.script("/events", Reply.sse(["a", "b", "c"], event_delay=1.0))
    with socket.create_connection(("127.0.0.1", chaos_server.port), timeout=5) as sock:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"data: a" not in received:
            received += sock.recv(65536)
        (request,) = chaos_server.requests
        assert chaos_server.closed_at(request.connection_id) is None
        left = time.monotonic()
    deadline = left + 2
    while (closed := chaos_server.closed_at(request.connection_id)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert 0 <= closed - left < 0.1
    chaos_server.reset()
    assert chaos_server.closed_at(request.connection_id) is None
