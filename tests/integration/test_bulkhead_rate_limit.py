"""Bulkhead and RateLimiter against a real fault server: what the server saw, not what we hoped."""

from __future__ import annotations

import asyncio
import threading
import time

from httprail import AsyncClient, BulkheadFullError, Failure, HttpSettings, Success
from httprail.middleware import Bulkhead, RateLimiter, Retry, Timeout
from httprail.testing import ChaosServer, RecordedRequest, Reply, TokenBucket

from .conftest import FAST

SETTINGS = HttpSettings(max_connections=64, max_keepalive=64, **FAST)


class Concurrency:
    """A route that answers after ``delay`` and remembers when each request arrived."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrivals: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.arrivals.append(time.monotonic())
        return Reply.slow(self.delay)

    def most_in_flight(self) -> int:
        """The most requests whose [arrival, arrival + delay) windows overlapped."""
        edges = sorted(
            [(t, 1) for t in self.arrivals] + [(t + self.delay, -1) for t in self.arrivals]
        )
        current = most = 0
        for _, step in edges:  # an end sorts before a start at the same instant
            current += step
            most = max(most, current)
        return most


async def test_the_server_never_sees_more_than_max_concurrent(chaos_server: ChaosServer) -> None:
    route = Concurrency(delay=0.05)
    chaos_server.route("/slow", route)
    bulkhead = Bulkhead(max_concurrent=3, max_queue=100)
    async with AsyncClient(chaos_server.url, plugins=[bulkhead], settings=SETTINGS) as client:
        outcomes = await asyncio.gather(*(client.get("/slow") for _ in range(24)))
    assert all(isinstance(o, Success) for o in outcomes)
    assert route.most_in_flight() == 3
    assert bulkhead.keys() == []


async def test_without_a_bulkhead_the_same_load_overlaps(chaos_server: ChaosServer) -> None:
    """The control for the test above: the route does see the concurrency it is offered."""
    route = Concurrency(delay=0.05)
    chaos_server.route("/slow", route)
    async with AsyncClient(chaos_server.url, plugins=[], settings=SETTINGS) as client:
        await asyncio.gather(*(client.get("/slow") for _ in range(24)))
    assert route.most_in_flight() > 3


async def test_queued_callers_give_up_after_queue_timeout(chaos_server: ChaosServer) -> None:
    chaos_server.script("/slow", Reply.slow(0.3))
    bulkhead = Bulkhead(max_concurrent=1, max_queue=2, queue_timeout=0.05)
    async with AsyncClient(chaos_server.url, plugins=[bulkhead], settings=SETTINGS) as client:
        outcomes = await asyncio.gather(*(client.get("/slow") for _ in range(5)))
    assert sum(isinstance(o, Success) for o in outcomes) == 1
    refused = [o.failure() for o in outcomes if isinstance(o, Failure)]
    assert len(refused) == 4
    assert all(isinstance(e, BulkheadFullError) for e in refused)
    assert chaos_server.count("/slow") == 1


async def test_a_fixed_rate_is_kept_on_the_wire(chaos_server: ChaosServer) -> None:
    """20/s with no burst against a server of 30/s: no 429, arrivals spread over ~1.45 s."""
    bucket = chaos_server.script_rate_limited("/paced", rate=30, burst=2)
    limiter = RateLimiter(rate=20, burst=1)
    async with AsyncClient(chaos_server.url, plugins=[limiter], settings=SETTINGS) as client:
        outcomes = await asyncio.gather(*(client.get("/paced") for _ in range(30)))
    assert all(isinstance(o, Success) for o in outcomes)
    assert bucket.refused == 0
    arrivals = [r.time for r in chaos_server.requests_for("/paced")]
    assert arrivals[-1] - arrivals[0] >= 1.35  # 29 intervals of 50 ms, some timer jitter


async def test_adaptive_mode_learns_a_rate_limited_server(chaos_server: ChaosServer) -> None:
    """A server of C requests/s (a 50 ms burst) answering 429 + ``retry-after-ms: 200`` above
    it, offered 5 x C for 3 s through Timeout → Retry → RateLimiter(adaptive=True) with no
    starting rate.

    Only a few percent of what reaches the server is refused (without the limiter ~80% would
    be), and once learnt (~1 s) the goodput is close to C. ``benchmarks/resilience.py``
    (scenario 6: ``Retry-After: 1``, 20 s) measures the issue's targets.
    """
    capacity, seconds = 40.0, 3.0
    bucket = TokenBucket(capacity)
    ok, refused = Reply.json({"ok": True}), Reply.status(429, retry_after_ms="200")
    chaos_server.route("/limited", lambda request: ok if bucket.take() else refused)
    limiter = RateLimiter(adaptive=True)
    stack = [Timeout(2.0), Retry(max_retries=2, backoff_base=0.05, backoff_max=0.5), limiter]
    ended: list[tuple[float, bool]] = []
    async with AsyncClient(chaos_server.url, plugins=stack, settings=SETTINGS) as client:
        await client.get("/warm-up")
        started = time.monotonic()

        async def call() -> None:
            outcome = await client.get("/limited")
            ended.append((time.monotonic() - started, isinstance(outcome, Success)))

        async with asyncio.TaskGroup() as group:
            for index in range(int(5 * capacity * seconds)):
                delay = started + index / (5 * capacity) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(call())
    seen = bucket.taken + bucket.refused
    goodput = sum(ok for at, ok in ended if 1.5 <= at < seconds) / (seconds - 1.5)
    state = limiter.snapshot(chaos_server.url)
    assert state is not None
    assert state.throttles >= 1
    assert bucket.refused <= 0.06 * seen, f"{bucket.refused} of {seen} requests saw 429"
    assert 0.75 * capacity <= goodput <= 1.1 * capacity, f"goodput {goodput:.1f}/s"
