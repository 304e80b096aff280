"""Hedge against a real server: the latency tail is cut, the load stays small, nothing leaks."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from urllib.parse import parse_qs

from httprail import Success
from httprail.middleware import CircuitBreaker, Hedge, Retry, Timeout
from httprail.terminals import HttpxTerminal
from httprail.testing import ChaosServer, RecordedRequest, Reply, ReplyFunction

from .conftest import ClientFactory

FAST = 0.005


def first_arrival_slow(slow: float, every: int) -> ReplyFunction:
    """Request ``?i=n`` is slow the first time it arrives when ``n % every == every // 2``.

    A second arrival of the same ``n`` (a hedge) is fast: the slowness belongs to one attempt,
    which is what hedging is for (a busy replica, a GC pause, a lost packet).
    """
    seen: set[int] = set()
    lock = threading.Lock()

    def reply(request: RecordedRequest) -> Reply:
        number = int(parse_qs(request.query)["i"][0])
        with lock:
            first = number not in seen
            seen.add(number)
        return Reply.slow(slow if first and number % every == every // 2 else FAST)

    return reply


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def stack(hedge: Hedge, breaker: CircuitBreaker) -> list[object]:
    """The recommended position: Timeout(total) → Retry → Hedge → CircuitBreaker."""
    return [Timeout(5), Retry(max_retries=1, backoff_base=0.01, backoff_max=0.05), hedge, breaker]


async def test_hedging_cuts_the_p99_of_a_slow_tail_with_little_extra_load(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.route("/tail", first_arrival_slow(slow=0.5, every=50))  # 2% take 0.5 s
    breaker = CircuitBreaker()
    hedge = Hedge(breaker=breaker, min_samples=50)
    client = make_client(plugins=stack(hedge, breaker))
    gate = asyncio.Semaphore(4)
    latencies: list[float] = []

    async def call(number: int, *, measured: bool) -> None:
        async with gate:
            started = time.perf_counter()
            outcome = await client.get("/tail", params={"i": number})
            assert isinstance(outcome, Success), outcome
            if measured:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(call(n, measured=False) for n in range(100)))  # learn the latency
    before = chaos_server.count("/tail")
    await asyncio.gather(*(call(n, measured=True) for n in range(100, 400)))
    extra = (chaos_server.count("/tail") - before) / 300 - 1

    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    report = f"p50={p50 * 1000:.1f} ms p99={p99 * 1000:.1f} ms extra={extra:.1%} {hedge.snapshot()}"
    assert p99 < 0.2, report  # unhedged, 6 of 300 requests take 0.5 s: p99 would be >= 0.5 s
    assert extra <= 0.10, report
    stats = next(iter(hedge.snapshot().values()))
    assert stats.hedge_wins >= 6, report  # every slow primary was beaten by its hedge
    assert stats.delay is not None, report
    assert stats.delay < 0.1, report


async def test_200_hedged_requests_leave_no_task_and_no_connection_behind(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.route("/slow-first", first_arrival_slow(slow=0.3, every=1))  # every primary
    breaker = CircuitBreaker()
    hedge = Hedge(delay=0.02, budget_ratio=1.0, budget_burst=20, breaker=breaker)
    client = make_client(
        plugins=stack(hedge, breaker), max_connections=50, max_keepalive=10, terminal="httpx"
    )
    gate = asyncio.Semaphore(20)

    async def call(number: int) -> None:
        async with gate:
            outcome = await client.get("/slow-first", params={"i": number})
            assert isinstance(outcome, Success), outcome

    await asyncio.gather(*(call(n) for n in range(200)))

    stats = next(iter(hedge.snapshot().values()))
    assert (stats.requests, stats.hedges) == (200, 200)
    assert stats.hedge_wins >= 180  # (a hedge on a warm connection may arrive first, and be slow)
    assert chaos_server.count("/slow-first") == 400
    assert asyncio.all_tasks() == {asyncio.current_task()}  # every loser was awaited
    terminal = client.pipeline.terminal
    assert isinstance(terminal, HttpxTerminal)
    pool = terminal.client._transport._pool  # type: ignore[attr-defined]
    assert len(pool.connections) <= 10  # only idle keep-alive connections remain
    assert all(connection.is_idle() for connection in pool.connections), [
        repr(connection) for connection in pool.connections
    ]

    # The server drops a cancelled primary's connection once its 0.3 s reply finds it closed.
    deadline = time.monotonic() + 3.0
    while len(chaos_server._writers) > len(pool.connections) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert len(chaos_server._writers) <= len(pool.connections)
    assert isinstance(await client.get("/slow-first", params={"i": 10_000}), Success)
