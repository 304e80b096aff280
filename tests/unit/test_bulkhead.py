"""Bulkhead: the cap on calls in flight, the FIFO wait queue, its time limits, and cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from httprail import (
    BulkheadFullError,
    ConfigError,
    Failure,
    Next,
    Outcome,
    Pipeline,
    ServerStatusError,
    Success,
)
from httprail.middleware import Bulkhead, CircuitBreaker, Retry
from httprail.testing import FakeClock, MockTerminal

from ._stepping import SteppingClock, request, settle, start

UPSTREAM = "https://api.test"


class Gate:
    """A terminal that holds every request until the test opens the gate."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.seen: list[str] = []
        self.in_flight = 0
        self.most = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.url.path)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.open.wait()
        finally:
            self.in_flight -= 1
        return httpx.Response(200)


def build(bulkhead: Bulkhead, handler: Any, *outer: Any) -> Pipeline:
    return Pipeline([*outer, bulkhead], MockTerminal(handler))


async def test_calls_beyond_the_limit_are_refused_at_once_without_a_queue() -> None:
    gate = Gate()
    bulkhead = Bulkhead(max_concurrent=2)
    pipeline = build(bulkhead, gate)
    running = start(pipeline, "/1", "/2")
    await settle()
    outcome = await pipeline.send(request("/3"))
    error = outcome.failure()
    assert isinstance(error, BulkheadFullError)
    assert (error.upstream, error.limit) == (UPSTREAM, 2)
    assert error.request is not None
    assert error.request.url.path == "/3"
    assert gate.seen == ["/1", "/2"]  # the refused call was never sent
    gate.open.set()
    assert all(isinstance(o, Success) for o in await asyncio.gather(*running))
    assert bulkhead.in_flight(UPSTREAM) == 0
    assert bulkhead.keys() == []  # an idle key holds no state


async def test_waiters_are_served_in_arrival_order() -> None:
    gate = Gate()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=10)
    pipeline = build(bulkhead, gate)
    tasks = []
    for path in ("/1", "/2", "/3", "/4", "/5"):
        tasks.extend(start(pipeline, path))
        await settle()
    assert bulkhead.in_flight(UPSTREAM) == 1
    assert bulkhead.waiting(UPSTREAM) == 4
    gate.open.set()
    await asyncio.gather(*tasks)
    assert gate.seen == ["/1", "/2", "/3", "/4", "/5"]
    assert gate.most == 1


async def test_a_freed_slot_goes_to_the_oldest_waiter_not_to_a_newcomer() -> None:
    gate = Gate()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=10)
    newcomer: list[asyncio.Task[Outcome]] = []

    class JoinAfterFirst:
        """Sends a new request the instant the first call has released its slot."""

        name = "join_after_first"

        async def __call__(self, req: httpx.Request, call_next: Next) -> Outcome:
            outcome = await call_next(req)
            if req.url.path == "/first":
                newcomer.extend(start(pipeline, "/newcomer"))
            return outcome

    pipeline = build(bulkhead, gate, JoinAfterFirst())
    first = start(pipeline, "/first")
    await settle()
    waiter = start(pipeline, "/waiter")
    await settle()
    gate.open.set()
    await asyncio.gather(*first, *waiter)
    await asyncio.gather(*newcomer)
    assert gate.seen == ["/first", "/waiter", "/newcomer"]


async def test_a_full_queue_refuses_at_once() -> None:
    gate = Gate()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=2)
    pipeline = build(bulkhead, gate)
    tasks = start(pipeline, "/1", "/2", "/3")
    await settle()
    assert bulkhead.waiting(UPSTREAM) == 2
    assert isinstance((await pipeline.send(request("/4"))).failure(), BulkheadFullError)
    gate.open.set()
    await asyncio.gather(*tasks)
    assert gate.seen == ["/1", "/2", "/3"]


async def test_a_waiter_gives_up_after_queue_timeout() -> None:
    clock, gate = FakeClock(), Gate()
    bulkhead = Bulkhead(
        max_concurrent=1, max_queue=5, queue_timeout=2.5, clock=clock, sleep=clock.sleep
    )
    pipeline = build(bulkhead, gate)
    holder = start(pipeline, "/holder")
    await settle()
    outcome = await pipeline.send(request("/waiter"))
    assert isinstance(outcome.failure(), BulkheadFullError)
    assert clock.sleeps == [2.5]
    assert bulkhead.waiting(UPSTREAM) == 0
    gate.open.set()
    await asyncio.gather(*holder)
    assert gate.seen == ["/holder"]


async def test_a_waiter_never_waits_past_the_request_deadline() -> None:
    clock, gate = FakeClock(), Gate()
    bulkhead = Bulkhead(
        max_concurrent=1, max_queue=5, queue_timeout=10, clock=clock, sleep=clock.sleep
    )
    pipeline = build(bulkhead, gate)
    holder = start(pipeline, "/holder")
    await settle()
    outcome = await pipeline.send(request("/waiter", deadline=clock() + 2.0))
    assert isinstance(outcome.failure(), BulkheadFullError)
    assert clock.sleeps == [2.0]  # the nearer of deadline and queue_timeout
    expired = await pipeline.send(request("/late", deadline=clock() - 0.1))
    assert isinstance(expired.failure(), BulkheadFullError)
    assert clock.sleeps == [2.0]  # a passed deadline is refused without waiting
    gate.open.set()
    await asyncio.gather(*holder)


async def test_a_slot_handed_over_before_the_timeout_is_used() -> None:
    clock, gate = SteppingClock(), Gate()
    bulkhead = Bulkhead(
        max_concurrent=1, max_queue=5, queue_timeout=5, clock=clock, sleep=clock.sleep
    )
    pipeline = build(bulkhead, gate)
    tasks = start(pipeline, "/holder", "/waiter")
    await clock.advance(4.0)
    gate.open.set()
    outcomes = await asyncio.gather(*tasks)
    assert all(isinstance(o, Success) for o in outcomes)
    await settle()
    assert clock.sleeping == 0  # the waiter's timer was cancelled


async def test_a_handover_and_the_timeout_at_once_admit_the_waiter() -> None:
    clock, gate = SteppingClock(), Gate()
    bulkhead = Bulkhead(
        max_concurrent=1, max_queue=5, queue_timeout=1, clock=clock, sleep=clock.sleep
    )

    class FireTimerOnRelease:
        name = "fire_timer"

        async def __call__(self, req: httpx.Request, call_next: Next) -> Outcome:
            outcome = await call_next(req)
            if req.url.path == "/holder":  # the slot was just handed over: time out now too
                clock.now += 1.0
                clock._sleepers[0][2].set_result(None)
            return outcome

    pipeline = build(bulkhead, gate, FireTimerOnRelease())
    tasks = start(pipeline, "/holder", "/waiter")
    await settle()
    gate.open.set()
    outcomes = await asyncio.gather(*tasks)
    assert all(isinstance(o, Success) for o in outcomes)
    assert gate.seen == ["/holder", "/waiter"]
    assert bulkhead.keys() == []


async def test_keys_are_isolated_and_key_can_group_them() -> None:
    gate = Gate()
    bulkhead = Bulkhead(max_concurrent=1)
    pipeline = build(bulkhead, gate)
    held = start(pipeline, "/a")
    await settle()
    other = asyncio.create_task(pipeline.send(request("/b", host="other.test")))
    await settle()
    assert gate.seen == ["/a", "/b"]
    assert bulkhead.in_flight("https://other.test") == 1
    gate.open.set()
    await asyncio.gather(*held, other)

    grouped = Bulkhead(max_concurrent=1, key=lambda r: "all")
    gate2 = Gate()
    pipeline2 = build(grouped, gate2)
    held2 = start(pipeline2, "/a")
    await settle()
    refused = await pipeline2.send(request("/b", host="other.test"))
    assert isinstance(refused.failure(), BulkheadFullError)
    assert refused.failure().upstream == "all"  # type: ignore[union-attr]
    assert grouped.key_of(request()) == "all"
    gate2.open.set()
    await asyncio.gather(*held2)


async def test_cancelled_waiters_leave_the_queue_and_hold_nothing() -> None:
    gate = Gate()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=10)
    pipeline = build(bulkhead, gate)
    holder = start(pipeline, "/holder")
    await settle()
    waiters = start(pipeline, "/w1", "/w2", "/w3")
    await settle()
    waiters[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiters[1]
    assert bulkhead.waiting(UPSTREAM) == 2
    gate.open.set()
    await asyncio.gather(*holder, waiters[0], waiters[2])
    assert gate.seen == ["/holder", "/w1", "/w3"]
    assert bulkhead.keys() == []


async def test_a_cancelled_call_in_flight_frees_its_slot_for_the_next_waiter() -> None:
    gate = Gate()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=10)
    pipeline = build(bulkhead, gate)
    holder = start(pipeline, "/holder")
    await settle()
    waiter = start(pipeline, "/waiter")
    await settle()
    holder[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder[0]
    await settle()
    assert gate.seen == ["/holder", "/waiter"]
    assert bulkhead.in_flight(UPSTREAM) == 1
    gate.open.set()
    await asyncio.gather(*waiter)
    assert bulkhead.keys() == []


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    gate = Gate()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=10)
    tasks: dict[str, asyncio.Task[Outcome]] = {}

    class CancelSecondOnRelease:
        name = "cancel_second"

        async def __call__(self, req: httpx.Request, call_next: Next) -> Outcome:
            outcome = await call_next(req)
            if req.url.path == "/holder":  # the slot was just handed to /second
                tasks["/second"].cancel()
            return outcome

    pipeline = build(bulkhead, gate, CancelSecondOnRelease())
    for path in ("/holder", "/second", "/third"):
        tasks[path] = asyncio.create_task(pipeline.send(request(path)))
        await settle()
    gate.open.set()
    await tasks["/holder"]
    with pytest.raises(asyncio.CancelledError):
        await tasks["/second"]
    assert isinstance(await tasks["/third"], Success)
    assert gate.seen == ["/holder", "/third"]
    assert bulkhead.keys() == []


async def test_a_thousand_cancellations_leak_no_slot() -> None:
    gate = Gate()
    bulkhead = Bulkhead(max_concurrent=10, max_queue=1000)
    pipeline = build(bulkhead, gate)
    tasks = start(pipeline, *(f"/{i}" for i in range(1010)))
    await settle()
    assert (bulkhead.in_flight(UPSTREAM), bulkhead.waiting(UPSTREAM)) == (10, 1000)
    for task in tasks[::-1]:  # the queue from its tail, then every call in flight
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert bulkhead.keys() == []
    gate.open.set()
    outcomes = await asyncio.gather(*(pipeline.send(request(f"/after{i}")) for i in range(10)))
    assert all(isinstance(o, Success) for o in outcomes)  # all ten slots are free again
    assert bulkhead.keys() == []


async def test_cancellations_mixed_with_handovers_leak_no_slot() -> None:
    bulkhead = Bulkhead(max_concurrent=3, max_queue=1000)

    async def quick(req: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(200)

    pipeline = build(bulkhead, quick)
    tasks = start(pipeline, *(f"/{i}" for i in range(1000)))
    for index, task in enumerate(tasks):
        if index % 2:
            task.cancel()
        if index % 50 == 0:
            await asyncio.sleep(0)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) >= 400
    assert bulkhead.keys() == []


async def test_each_retry_attempt_takes_a_slot_again() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead(max_concurrent=1)
    seen: list[int] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(bulkhead.in_flight(UPSTREAM))
        return httpx.Response(503 if len(seen) < 3 else 200)

    retry = Retry(max_retries=3, sleep=clock.sleep, clock=clock)
    pipeline = build(bulkhead, handler, retry)
    assert isinstance(await pipeline.send(request()), Success)
    assert seen == [1, 1, 1]
    assert bulkhead.keys() == []


async def test_a_full_bulkhead_is_neither_retried_nor_counted_by_the_breaker() -> None:
    clock, gate = FakeClock(), Gate()
    bulkhead = Bulkhead(max_concurrent=1)
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    retry = Retry(max_retries=3, sleep=clock.sleep, clock=clock)
    pipeline = build(bulkhead, gate, retry, breaker)
    holder = start(pipeline, "/holder")
    await settle()
    for _ in range(3):
        assert isinstance((await pipeline.send(request("/x"))).failure(), BulkheadFullError)
    assert clock.sleeps == []  # not retried
    assert (await breaker.state(UPSTREAM)).value == "closed"
    gate.open.set()
    await asyncio.gather(*holder)


async def test_failures_from_further_in_pass_through_and_release_the_slot() -> None:
    bulkhead = Bulkhead(max_concurrent=1)
    pipeline = build(bulkhead, lambda req: httpx.Response(502))
    outcome = await pipeline.send(request())
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), ServerStatusError)
    assert bulkhead.keys() == []


def test_repr_and_attributes() -> None:
    bulkhead = Bulkhead(max_concurrent=4, max_queue=8, queue_timeout=1)
    assert repr(bulkhead) == "Bulkhead(max_concurrent=4, max_queue=8, queue_timeout=1.0)"
    assert bulkhead.name == "bulkhead"
    assert (bulkhead.in_flight("x"), bulkhead.waiting("x")) == (0, 0)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 1.5}, "max_concurrent"),
        ({"max_concurrent": True}, "max_concurrent"),
        ({"max_concurrent": 1, "max_queue": -1}, "max_queue"),
        ({"max_concurrent": 1, "max_queue": "3"}, "max_queue"),
        ({"max_concurrent": 1, "queue_timeout": 0}, "queue_timeout"),
        ({"max_concurrent": 1, "queue_timeout": float("inf")}, "queue_timeout"),
        ({"max_concurrent": 1, "queue_timeout": "1"}, "queue_timeout"),
        ({"max_concurrent": 1, "key": "origin"}, "key"),
        ({"max_concurrent": 1, "clock": 3}, "clock"),
        ({"max_concurrent": 1, "sleep": None}, "sleep"),
    ],
)
def test_invalid_options_are_config_errors_naming_the_option(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=rf"Bulkhead\({named}=\.\.\.\)"):
        Bulkhead(**options)
