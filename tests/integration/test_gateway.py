"""The example gateway (``examples/gateway``) as a real process: uvicorn on 127.0.0.1, two typed
services configured only from ``HTTP_SERVICES__*`` variables, ChaosServer upstreams.

Must show (issue 16): the health endpoint reports the flaky service degraded when its breaker
opens while the other stays ready; a downstream client disconnecting mid-stream closes the
upstream stream within 100 ms (measured by the upstream server: ``ChaosServer.closed_at``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from httprail.testing import ChaosServer, Reply

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "uvicorn", "examples.gateway.app:app", "--no-access-log"]
RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def launcher() -> ModuleType:
    """``examples/gateway/__main__.py``, for its demo scripts and variables."""
    spec = importlib.util.spec_from_file_location(
        "gateway_launcher", ROOT / "examples" / "gateway" / "__main__.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[ChaosServer, ChaosServer]]:
    """The catalog and quotes upstreams, scripted as the launcher scripts them."""
    demo = launcher()
    with ChaosServer() as catalog, ChaosServer() as quotes:
        demo.demo_catalog(catalog)
        demo.demo_quotes(quotes, fail_ratio=0.0)
        yield catalog, quotes


@pytest.fixture(scope="module")
def gateway(upstreams: tuple[ChaosServer, ChaosServer], tmp_path_factory: Any) -> Iterator[str]:
    """``uvicorn examples.gateway.app:app`` in a child process; its base URL."""
    catalog, quotes = upstreams
    variables = launcher().demo_environment(catalog.url, quotes.url)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HTTP_")}
    log = tmp_path_factory.mktemp("gateway") / "uvicorn.log"
    with log.open("wb") as sink:
        child = subprocess.Popen(
            [*COMMAND, "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT,
            env={**environ, **variables},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while (found := RUNNING.search(log.read_text())) is None:
            assert child.poll() is None, f"the gateway exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"the gateway did not start: {log.read_text()}"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{found[1]}"
    finally:
        child.terminate()
        child.wait(timeout=10)
    assert "Traceback" not in log.read_text(), log.read_text()


def test_items_are_collected_across_every_page(
    gateway: str, upstreams: tuple[ChaosServer, ChaosServer]
) -> None:
    """/items pages through the catalog (three pages, then an empty one): twelve typed items,
    or the first five with ?limit=5."""
    answer = httpx.get(f"{gateway}/items", timeout=10)
    assert answer.status_code == 200
    assert [item["id"] for item in answer.json()] == list(range(1, 13))
    assert httpx.get(f"{gateway}/items?limit=5", timeout=10).json()[-1]["id"] == 5


def test_the_flaky_service_reads_degraded_when_its_breaker_opens_and_the_other_stays_ready(
    gateway: str, upstreams: tuple[ChaosServer, ChaosServer]
) -> None:
    """Once the quotes service fails enough for its circuit to open, /quote answers 503 with
    Retry-After, /health/ready reports quotes "degraded" (breaker open) and catalog "ready",
    and the gateway stays ready (200)."""
    _, quotes = upstreams
    with httpx.Client(base_url=gateway, timeout=10) as http:
        before = http.get("/health/ready").json()
        assert before["services"]["quotes"]["status"] == "ready"
        assert http.get("/quote").json() == {"text": "Simple is better than complex."}
        quotes.script("/quote", Reply.status(503))
        statuses = []
        for _ in range(10):
            answer = http.get("/quote")
            statuses.append(answer.status_code)
            if answer.status_code == 503:
                break
        assert statuses[0] == 502  # the upstream's 503s, retried once, then given up
        assert statuses[-1] == 503, statuses
        assert answer.json()["error"] == "CircuitBreakerOpenError"
        assert 1 <= int(answer.headers["retry-after"]) <= 10
        health = http.get("/health/ready")
    assert health.status_code == 200
    report = health.json()
    assert report["status"] == "degraded"
    assert report["services"]["quotes"]["status"] == "degraded"
    assert report["services"]["catalog"]["status"] == "ready"
    (upstream,) = report["services"]["quotes"]["upstreams"]["upstreams"].values()
    assert upstream["breaker"] == "open"
    assert httpx.get(f"{gateway}/health/live").json() == {"status": "alive"}


def test_a_client_leaving_mid_stream_closes_the_upstream_stream_within_100_ms(
    gateway: str, upstreams: tuple[ChaosServer, ChaosServer]
) -> None:
    """The caller reads the first event of /events (one a second) and closes its socket: the
    catalog's connection for that stream ends within 100 ms, as the catalog measures it."""
    catalog, _ = upstreams
    catalog.forget_requests()
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: gateway\r\n\r\n")
        received = b""
        while b'data: {"tick": 1}' not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    left = time.monotonic()
    (request,) = catalog.requests_for("/events")
    deadline = left + 5
    while (closed := catalog.closed_at(request.connection_id)) is None:
        assert time.monotonic() < deadline, "the upstream stream was never closed"
        time.sleep(0.001)
    print(f"upstream closed {1000 * (closed - left):.1f} ms after the client left")
    assert closed - left < 0.1
