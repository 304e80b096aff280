"""Hedge: which requests are hedged, when, who wins, what the losers leave behind, the budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from httprail import (
    ConfigError,
    Failure,
    Outcome,
    Pipeline,
    ReadError,
    RequestContext,
    RequestTimeoutError,
    ServerStatusError,
    Success,
    get_context,
    set_context,
)
from httprail._events import CircuitState
from httprail.middleware import HEDGE_EXTENSION, CircuitBreaker, Hedge, Retry, Timeout
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/items"


async def settle(rounds: int = 20) -> None:
    """Let every task that can run without a timer run (no real waiting)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Sleeps:
    """An injectable sleep that records each delay and returns at once (or when opened)."""

    def __init__(self, *, instant: bool = True) -> None:
        self.delays: list[float] = []
        self.opened = asyncio.Event()
        if instant:
            self.opened.set()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self.opened.wait()


class Upstream:
    """A handler whose n-th request (0 = primary, 1 = first hedge, ...) answers when released.

    ``replies[n]`` is what request n answers; ``release(n)`` lets it answer. Cancellations are
    recorded per request number.
    """

    def __init__(self, *replies: Any, held: bool = True) -> None:
        self.replies = list(replies)
        self.gates = [asyncio.Event() for _ in replies]
        if not held:
            for gate in self.gates:
                gate.set()
        self.cancelled: list[int] = []
        self.seen: list[httpx.Request] = []
        self.arrived = [asyncio.Event() for _ in replies]  # set when request n is sent

    def release(self, *numbers: int) -> None:
        for number in numbers:
            self.gates[number].set()

    async def __call__(self, request: httpx.Request) -> Any:
        number = len(self.seen)
        self.seen.append(request)
        self.arrived[number].set()
        try:
            await self.gates[number].wait()
        except asyncio.CancelledError:
            self.cancelled.append(number)
            raise
        return self.replies[number]


def make(handler: Any, **options: Any) -> tuple[Pipeline, Hedge, MockTerminal]:
    options.setdefault("sleep", Sleeps())
    hedge = Hedge(**options)
    terminal = MockTerminal(handler)
    return Pipeline([hedge], terminal), hedge, terminal


def stats(hedge: Hedge, upstream: str = "https://api.test") -> Any:
    return hedge.snapshot()[upstream]


class TrackedStream(httpx.AsyncByteStream):
    """A response body that records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{}"

    async def aclose(self) -> None:
        self.closed = True


# -- which requests are hedged ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
async def test_idempotent_methods_are_hedged(method: str) -> None:
    upstream = Upstream(httpx.Response(200), httpx.Response(200))
    pipeline, _, terminal = make(upstream, delay=0.05)
    task = asyncio.create_task(pipeline.send(httpx.Request(method, URL)))
    await settle()
    assert len(terminal.requests) == 2
    upstream.release(1)
    assert isinstance(await task, Success)


async def test_post_without_idempotency_key_is_never_hedged() -> None:
    upstream = Upstream(httpx.Response(201))
    pipeline, hedge, terminal = make(upstream, delay=0.0)
    task = asyncio.create_task(pipeline.send(httpx.Request("POST", URL, json={"a": 1})))
    await settle()
    assert len(terminal.requests) == 1
    upstream.release(0)
    assert isinstance(await task, Success)
    assert hedge.snapshot() == {}


async def test_post_with_idempotency_key_is_hedged_with_the_same_key_and_body() -> None:
    upstream = Upstream(httpx.Response(201), httpx.Response(201))
    pipeline, _, terminal = make(upstream, delay=0.0)
    request = httpx.Request("POST", URL, json={"a": 1}, headers={"Idempotency-Key": "k-1"})
    task = asyncio.create_task(pipeline.send(request))
    await settle()
    upstream.release(1)
    assert isinstance(await task, Success)
    primary, copy = terminal.requests
    assert copy is not primary
    assert copy.headers["idempotency-key"] == "k-1"
    assert copy.content == primary.content == b'{"a":1}'
    assert copy.headers["content-length"] == primary.headers["content-length"]
    assert copy.extensions[HEDGE_EXTENSION] == 1
    assert HEDGE_EXTENSION not in primary.extensions


async def test_a_streamed_request_is_never_hedged() -> None:
    upstream = Upstream(httpx.Response(200))
    pipeline, _, terminal = make(upstream, delay=0.0)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(stream=True))
    task = asyncio.create_task(pipeline.send(request))
    await settle()
    assert len(terminal.requests) == 1
    upstream.release(0)
    await task


async def test_a_generator_body_is_never_hedged() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"chunk"

    upstream = Upstream(httpx.Response(200))
    pipeline, _, terminal = make(upstream, delay=0.0)
    task = asyncio.create_task(pipeline.send(httpx.Request("PUT", URL, content=body())))
    await settle()
    assert len(terminal.requests) == 1
    upstream.release(0)
    await task


# -- when ---------------------------------------------------------------------------------------


async def test_fixed_delay_hedge_wins_and_the_primary_is_cancelled() -> None:
    upstream = Upstream(
        httpx.Response(200, json={"by": "primary"}), httpx.Response(200, json={"by": "hedge"})
    )
    sleeps = Sleeps()
    pipeline, hedge, _ = make(upstream, delay=0.05, sleep=sleeps)
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    assert sleeps.delays == [0.05]
    upstream.release(1)
    outcome = await task
    assert outcome.unwrap().json() == {"by": "hedge"}
    assert upstream.cancelled == [0]
    assert asyncio.all_tasks() == {asyncio.current_task()}
    s = stats(hedge)
    assert (s.requests, s.hedged, s.hedges, s.hedge_wins, s.delay) == (1, 1, 1, 1, 0.05)


async def test_a_primary_answering_within_the_delay_sends_no_hedge() -> None:
    upstream = Upstream(httpx.Response(200), held=False)
    sleeps = Sleeps(instant=False)  # the delay never ends
    pipeline, hedge, terminal = make(upstream, delay=0.05, sleep=sleeps)
    outcome = await pipeline.send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 1
    assert stats(hedge).hedges == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the delay timer was cancelled


async def test_the_real_sleep_path_hedges_after_the_delay() -> None:
    upstream = Upstream(httpx.Response(200), httpx.Response(200))
    hedge = Hedge(delay=0.01)
    pipeline = Pipeline([hedge], MockTerminal(upstream))
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    assert len(upstream.seen) == 1
    await asyncio.sleep(0.03)
    assert len(upstream.seen) == 2
    upstream.release(0)
    assert isinstance(await task, Success)
    assert upstream.cancelled == [1]


async def test_the_real_timer_is_cancelled_when_the_primary_answers_first() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(200))
    outcome = await Pipeline([Hedge(delay=10.0)], terminal).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    loop = asyncio.get_running_loop()
    assert all(handle.cancelled() for handle in loop._scheduled)  # type: ignore[attr-defined]


async def test_adaptive_delay_waits_for_min_samples_then_uses_the_quantile() -> None:
    clock = FakeClock()
    latencies = iter([0.001 * k for k in range(1, 21)])

    def timed(request: httpx.Request) -> httpx.Response:
        clock.advance(next(latencies))
        return httpx.Response(200)

    sleeps = Sleeps(instant=False)
    hedge = Hedge(quantile=0.9, min_samples=20, window=100, clock=clock, sleep=sleeps)
    pipeline = Pipeline([hedge], MockTerminal(timed))
    for _ in range(20):
        await pipeline.send(httpx.Request("GET", URL))
    assert sleeps.delays == []  # still learning: no hedge timer at all
    assert stats(hedge).delay == pytest.approx(0.018)  # nearest rank: the 18th of 20

    upstream = Upstream(httpx.Response(200), httpx.Response(200))
    pipeline = Pipeline([hedge], MockTerminal(upstream))
    sleeps.opened.set()
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    assert sleeps.delays == [pytest.approx(0.018)]
    clock.advance(0.5)
    upstream.release(1)
    await task
    s = stats(hedge)
    assert (s.samples, s.hedge_wins) == (21, 1)  # the lost primary counted as "at least 0.5 s"


async def test_a_slow_tail_the_hedges_hide_keeps_counting_as_slow() -> None:
    clock = FakeClock()
    hedge = Hedge(quantile=0.5, min_samples=2, window=4, clock=clock, sleep=Sleeps())

    async def primary_slow(request: httpx.Request) -> httpx.Response:
        if HEDGE_EXTENSION in request.extensions:
            clock.advance(1.0)
            return httpx.Response(200)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def fast(request: httpx.Request) -> httpx.Response:
        clock.advance(0.1)
        return httpx.Response(200)

    for _ in range(2):
        await Pipeline([hedge], MockTerminal(fast)).send(httpx.Request("GET", URL))
    assert stats(hedge).delay == pytest.approx(0.1)
    slow = Pipeline([hedge], MockTerminal(primary_slow))
    for _ in range(3):
        await slow.send(httpx.Request("GET", URL))
    # the window holds one 0.1 s sample and three lost primaries of "at least 1 s"
    assert stats(hedge).delay == pytest.approx(1.0)
    assert stats(hedge).hedge_wins == 3


async def test_no_hedge_when_the_delay_would_end_past_the_deadline() -> None:
    clock = FakeClock()
    upstream = Upstream(httpx.Response(200))
    pipeline, _, terminal = make(upstream, delay=0.5, clock=clock)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(deadline=clock() + 0.4))
    task = asyncio.create_task(pipeline.send(request))
    await settle()
    assert len(terminal.requests) == 1
    upstream.release(0)
    await task


async def test_a_hedge_carries_the_same_deadline() -> None:
    clock = FakeClock()
    upstream = Upstream(httpx.Response(200), httpx.Response(200))
    pipeline, _, terminal = make(upstream, delay=0.1, clock=clock)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(deadline=clock() + 5.0, tags={"t": "1"}))
    task = asyncio.create_task(pipeline.send(request))
    await settle()
    upstream.release(1)
    await task
    assert get_context(terminal.requests[1]) == get_context(request)


async def test_max_hedges_two_sends_two_hedges_one_delay_apart() -> None:
    upstream = Upstream(*(httpx.Response(200, json={"n": n}) for n in range(3)))
    sleeps = Sleeps()
    pipeline, hedge, _ = make(upstream, delay=0.02, max_hedges=2, sleep=sleeps)
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    assert len(upstream.seen) == 3
    assert sleeps.delays == [0.02, 0.02]
    assert [r.extensions.get(HEDGE_EXTENSION) for r in upstream.seen] == [None, 1, 2]
    upstream.release(2)
    assert (await task).unwrap().json() == {"n": 2}
    assert sorted(upstream.cancelled) == [0, 1]
    assert (stats(hedge).hedged, stats(hedge).hedges) == (1, 2)


async def test_a_hedge_is_not_sent_once_the_deadline_has_passed() -> None:
    clock = FakeClock()

    async def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(0.2)  # the primary's connect takes a while
        await asyncio.sleep(0)
        return httpx.Response(200)

    pipeline, hedge, terminal = make(handler, delay=0.5, clock=clock, sleep=clock.sleep)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(deadline=clock() + 0.6))
    assert isinstance(await pipeline.send(request), Success)
    assert clock.sleeps == [0.5]  # the timer ran, and found the deadline past
    assert len(terminal.requests) == 1
    assert stats(hedge).hedges == 0


async def test_the_real_timer_sends_the_second_hedge_one_delay_after_the_first() -> None:
    upstream = Upstream(*(httpx.Response(200) for _ in range(3)))
    pipeline = Pipeline([Hedge(delay=0.01, max_hedges=2)], MockTerminal(upstream))
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    async with asyncio.timeout(5):  # a hang guard: the two hedges come 0.01 s apart
        await upstream.arrived[2].wait()
    assert len(upstream.seen) == 3
    upstream.release(0)
    assert isinstance(await task, Success)
    assert sorted(upstream.cancelled) == [1, 2]


async def test_a_failed_primary_outside_the_race_is_no_latency_sample() -> None:
    pipeline, hedge, _ = make(lambda request: ReadError("boom", request=request))
    assert isinstance((await pipeline.send(httpx.Request("GET", URL))).failure(), ReadError)
    assert stats(hedge).samples == 0


# -- who wins -------------------------------------------------------------------------------------


async def test_a_hedge_that_answered_but_lost_has_its_response_closed() -> None:
    bodies = [TrackedStream(), TrackedStream()]
    replies = [Success(httpx.Response(200, stream=body)) for body in bodies]
    upstream = Upstream(*replies)
    pipeline, _, _ = make(upstream, delay=0.0)
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    upstream.release(1, 0)  # both answer in the same loop iteration, the hedge first
    outcome = await task
    assert outcome.unwrap().stream is bodies[0]  # the primary came back before the hedge won
    assert not bodies[0].closed
    assert bodies[1].closed


async def test_a_failure_first_waits_for_the_other_attempt() -> None:
    upstream = Upstream(httpx.Response(503), httpx.Response(200, json={"by": "hedge"}))
    pipeline, hedge, _ = make(upstream, delay=0.0)
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    upstream.release(0)
    await settle()
    assert not task.done()
    upstream.release(1)
    assert (await task).unwrap().json() == {"by": "hedge"}
    assert stats(hedge).hedge_wins == 1


async def test_when_every_attempt_fails_the_primarys_failure_is_returned() -> None:
    upstream = Upstream(httpx.Response(503), httpx.Response(404))
    pipeline, _, _ = make(upstream, delay=0.0)
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    upstream.release(1)  # the hedge fails first
    await settle()
    upstream.release(0)
    match await task:
        case Failure(ServerStatusError(status_code=503)):
            pass
        case other:
            pytest.fail(f"expected the primary's 503, got {other}")


async def test_a_primary_failing_before_the_delay_is_returned_without_a_hedge() -> None:
    sleeps = Sleeps(instant=False)
    pipeline, hedge, terminal = make(
        lambda request: ReadError("boom", request=request), delay=0.05, sleep=sleeps
    )
    outcome = await pipeline.send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), ReadError)
    assert len(terminal.requests) == 1
    assert stats(hedge).samples == 0  # no response, no latency sample


async def test_retry_outside_retries_a_pair_that_failed() -> None:
    clock = FakeClock()
    statuses: list[int] = []
    hedge_answered = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if len(statuses) >= 2:
            statuses.append(200)
        elif HEDGE_EXTENSION in request.extensions:
            statuses.append(503)
            hedge_answered.set()
        else:
            await hedge_answered.wait()  # the primary fails after the hedge did
            statuses.append(503)
        return httpx.Response(statuses[-1])

    retry = Retry(max_retries=1, sleep=clock.sleep, clock=clock)
    hedge = Hedge(delay=0.0, sleep=Sleeps(), clock=clock)
    outcome = await Pipeline([retry, hedge], MockTerminal(handler)).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert statuses == [503, 503, 200]  # the pair failed; the retry's primary answered
    assert len(clock.sleeps) == 1


async def test_an_exception_escaping_the_primary_propagates_and_hedges_are_cancelled() -> None:
    class Broken(Exception):
        pass

    async def handler(request: httpx.Request) -> httpx.Response:
        if HEDGE_EXTENSION in request.extensions:
            await asyncio.Event().wait()
        await asyncio.sleep(0)
        raise Broken

    pipeline, hedge, _ = make(handler, delay=0.0)
    with pytest.raises(Broken):
        await pipeline.send(httpx.Request("GET", URL))
    assert stats(hedge).hedges == 1
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_an_exception_escaping_a_hedge_is_logged_and_the_primary_answers() -> None:
    primary_may_answer = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if HEDGE_EXTENSION in request.extensions:
            primary_may_answer.set()
            raise RuntimeError("bug in a stage")
        await primary_may_answer.wait()
        return httpx.Response(200)

    pipeline, _, _ = make(handler, delay=0.0)
    with capture_logs() as logs:
        outcome = await pipeline.send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert [log["event"] for log in logs] == ["httprail.hedge_attempt_raised"]


async def test_stages_inside_see_separate_request_objects() -> None:
    async def stamp(
        request: httpx.Request, call_next: Callable[[httpx.Request], Awaitable[Outcome]]
    ) -> Outcome:
        request.headers["x-attempt"] = str(request.extensions.get(HEDGE_EXTENSION, 0))
        return await call_next(request)

    stamp.name = "stamp"  # type: ignore[attr-defined]
    upstream = Upstream(httpx.Response(200), httpx.Response(200))
    hedge = Hedge(delay=0.0, sleep=Sleeps())
    pipeline = Pipeline([hedge, stamp], MockTerminal(upstream))  # type: ignore[list-item]
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    upstream.release(1)
    await task
    assert [r.headers["x-attempt"] for r in upstream.seen] == ["0", "1"]


# -- budget and breaker ----------------------------------------------------------------------


async def hedged_calls(hedge: Hedge, count: int) -> list[bool]:
    """Send ``count`` slow-primary requests one by one; which ones got a hedge."""
    result = []
    for _ in range(count):
        upstream = Upstream(httpx.Response(200), httpx.Response(200))
        upstream.release(1)
        task = asyncio.create_task(
            Pipeline([hedge], MockTerminal(upstream)).send(httpx.Request("GET", URL))
        )
        await settle()
        upstream.release(0)
        await task
        result.append(len(upstream.seen) == 2)
    return result


async def test_the_budget_allows_burst_plus_ratio_times_requests() -> None:
    hedge = Hedge(delay=0.0, budget_ratio=0.1, budget_burst=2, sleep=Sleeps())
    sent = await hedged_calls(hedge, 32)
    assert sent[:2] == [True, True]  # the burst
    assert sum(sent) == 2 + 3  # then one per 10 requests
    assert [i for i, hedged in enumerate(sent) if hedged][2:] == [10, 20, 30]
    s = stats(hedge)
    assert (s.hedges, s.no_budget) == (5, 27)


async def test_an_empty_budget_lets_the_primary_continue() -> None:
    hedge = Hedge(delay=0.0, budget_ratio=0.1, budget_burst=1, sleep=Sleeps())
    await hedged_calls(hedge, 1)
    upstream = Upstream(httpx.Response(200, json={"by": "primary"}))
    task = asyncio.create_task(
        Pipeline([hedge], MockTerminal(upstream)).send(httpx.Request("GET", URL))
    )
    await settle()
    assert len(upstream.seen) == 1
    upstream.release(0)
    assert (await task).unwrap().json() == {"by": "primary"}


class StubBreaker:
    def __init__(self, state: CircuitState) -> None:
        self.current = state
        self.asked: list[str] = []

    def key_of(self, request: httpx.Request) -> str:
        return "svc"

    async def state(self, key: str) -> CircuitState:
        self.asked.append(key)
        return self.current


@pytest.mark.parametrize("state", [CircuitState.OPEN, CircuitState.HALF_OPEN])
async def test_no_hedge_while_the_breaker_is_not_closed(state: CircuitState) -> None:
    breaker = StubBreaker(state)
    hedge = Hedge(delay=0.0, breaker=breaker, sleep=Sleeps())  # type: ignore[arg-type]
    assert await hedged_calls(hedge, 3) == [False, False, False]
    assert breaker.asked == ["svc"] * 3
    s = stats(hedge)
    assert (s.breaker_not_closed, s.tokens) == (3, 10.0)  # no token spent
    breaker.current = CircuitState.CLOSED
    assert await hedged_calls(hedge, 1) == [True]


async def test_a_half_open_probe_of_a_real_breaker_is_not_hedged() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    hedge = Hedge(delay=0.0, breaker=breaker, sleep=Sleeps(), clock=clock)
    failing = Pipeline([hedge, breaker], MockTerminal(lambda request: httpx.Response(503)))
    await failing.send(httpx.Request("GET", URL))
    assert await breaker.state(breaker.key_of(httpx.Request("GET", URL))) is CircuitState.OPEN
    clock.advance(11)
    upstream = Upstream(httpx.Response(200))
    task = asyncio.create_task(
        Pipeline([hedge, breaker], MockTerminal(upstream)).send(httpx.Request("GET", URL))
    )
    await settle()
    assert len(upstream.seen) == 1  # the probe alone
    upstream.release(0)
    assert isinstance(await task, Success)
    assert stats(hedge).breaker_not_closed == 1


async def test_a_failing_breaker_store_means_no_hedge() -> None:
    class BrokenBreaker(StubBreaker):
        async def state(self, key: str) -> CircuitState:
            raise OSError("store down")

    hedge = Hedge(delay=0.0, breaker=BrokenBreaker(CircuitState.CLOSED), sleep=Sleeps())  # type: ignore[arg-type]
    assert await hedged_calls(hedge, 1) == [False]


@pytest.mark.parametrize("answer", [200, 503])
async def test_no_hedge_when_the_primary_answers_while_the_breaker_is_asked(answer: int) -> None:
    class SlowBreaker(StubBreaker):
        async def state(self, key: str) -> CircuitState:
            upstream.release(0)  # the primary answers meanwhile
            await settle()
            return CircuitState.CLOSED

    upstream = Upstream(httpx.Response(answer))
    hedge = Hedge(delay=0.0, breaker=SlowBreaker(CircuitState.CLOSED), sleep=Sleeps())  # type: ignore[arg-type]
    outcome = await Pipeline([hedge], MockTerminal(upstream)).send(httpx.Request("GET", URL))
    expected = Success if answer == 200 else Failure
    assert isinstance(outcome, expected)
    assert len(upstream.seen) == 1
    assert (stats(hedge).hedges, stats(hedge).tokens) == (0, 10.0)


async def test_two_hedges_due_at_once_share_the_last_token_while_the_breaker_is_asked() -> None:
    class YieldingBreaker(StubBreaker):
        async def state(self, key: str) -> CircuitState:
            await asyncio.sleep(0)
            return CircuitState.CLOSED

    hedge = Hedge(
        delay=0.0, breaker=YieldingBreaker(CircuitState.CLOSED), budget_burst=1, sleep=Sleeps()
    )  # type: ignore[arg-type]
    upstreams = [Upstream(httpx.Response(200), httpx.Response(200)) for _ in range(2)]
    tasks = [
        asyncio.create_task(Pipeline([hedge], MockTerminal(u)).send(httpx.Request("GET", URL)))
        for u in upstreams
    ]
    await settle()
    assert sorted(len(u.seen) for u in upstreams) == [1, 2]
    for u in upstreams:
        u.release(0)
    await asyncio.gather(*tasks)
    assert (stats(hedge).hedges, stats(hedge).no_budget) == (1, 1)


async def test_a_second_hedge_is_not_started_once_the_breaker_said_no() -> None:
    async def sleep(seconds: float) -> None:
        await settle(3)  # long enough for the breaker to be asked

    breaker = StubBreaker(CircuitState.OPEN)
    hedge = Hedge(delay=0.0, max_hedges=3, breaker=breaker, sleep=sleep)  # type: ignore[arg-type]
    assert await hedged_calls(hedge, 1) == [False]
    assert breaker.asked == ["svc"]


# -- cancellation -----------------------------------------------------------------------------


async def test_cancelling_the_caller_cancels_every_attempt_and_propagates() -> None:
    upstream = Upstream(httpx.Response(200), httpx.Response(200))
    pipeline, _, _ = make(upstream, delay=0.0)
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    assert len(upstream.seen) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(upstream.cancelled) == [0, 1]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_cancelling_during_the_delay_cancels_the_primary() -> None:
    upstream = Upstream(httpx.Response(200))
    pipeline, _, _ = make(upstream, delay=1.0, sleep=Sleeps(instant=False))
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert upstream.cancelled == [0]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_total_timeout_outside_ends_both_attempts() -> None:
    upstream = Upstream(httpx.Response(200), httpx.Response(200))
    pipeline = Pipeline([Timeout(0.2), Hedge(delay=0.01)], MockTerminal(upstream))
    outcome = await pipeline.send(httpx.Request("GET", URL))
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "total"
    assert sorted(upstream.cancelled) == [0, 1]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_hedge_winning_as_the_caller_is_cancelled_loses_to_the_cancellation() -> None:
    body = TrackedStream()
    upstream = Upstream(httpx.Response(200), Success(httpx.Response(200, stream=body)))
    caller: asyncio.Task[Outcome] | None = None

    async def cancel_after_the_hedge_won(
        request: httpx.Request, call_next: Callable[[httpx.Request], Awaitable[Outcome]]
    ) -> Outcome:
        outcome = await call_next(request)
        if HEDGE_EXTENSION in request.extensions:
            assert caller is not None
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, caller.cancel)  # lands just after the hedge's win
        return outcome

    cancel_after_the_hedge_won.name = "canceller"  # type: ignore[attr-defined]
    hedge = Hedge(delay=0.0, sleep=Sleeps())
    pipeline = Pipeline([hedge, cancel_after_the_hedge_won], MockTerminal(upstream))  # type: ignore[list-item]
    caller = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    upstream.release(1)
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert body.closed
    assert stats(hedge).hedge_wins == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize("primary_answer", ["failure", "success"])
async def test_a_stage_swallowing_the_cancellation_of_a_lost_primary(primary_answer: str) -> None:
    body = TrackedStream()
    upstream = Upstream(httpx.Response(200), Success(httpx.Response(200, stream=body)))

    async def swallow(
        request: httpx.Request, call_next: Callable[[httpx.Request], Awaitable[Outcome]]
    ) -> Outcome:
        try:
            return await call_next(request)
        except asyncio.CancelledError:  # a misbehaving stage
            if primary_answer == "failure":
                return Failure(ReadError("interrupted", request=request))
            return Success(httpx.Response(200, json={"by": "primary"}))

    swallow.name = "swallow"  # type: ignore[attr-defined]
    hedge = Hedge(delay=0.0, sleep=Sleeps())
    pipeline = Pipeline([hedge, swallow], MockTerminal(upstream))  # type: ignore[list-item]
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    upstream.release(1)
    outcome = await task
    assert task.cancelling() == 0  # the interruption was taken back
    if primary_answer == "failure":
        assert outcome.unwrap().stream is body  # the hedge's success
        assert not body.closed
    else:
        assert outcome.unwrap().json() == {"by": "primary"}
        assert body.closed


async def test_a_loser_response_that_fails_to_close_is_logged() -> None:
    class BadClose(TrackedStream):
        async def aclose(self) -> None:
            raise httpx.ReadError("already broken")

    upstream = Upstream(
        Success(httpx.Response(200)), Success(httpx.Response(200, stream=BadClose()))
    )
    pipeline, _, _ = make(upstream, delay=0.0)
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    with capture_logs() as logs:
        upstream.release(1, 0)
        assert isinstance(await task, Success)
    assert [log["event"] for log in logs] == ["httprail.hedge_close_failed"]


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("delay", -0.1),
        ("delay", float("nan")),
        ("delay", "1"),
        ("quantile", 0),
        ("quantile", 1.0),
        ("quantile", True),
        ("max_hedges", 0),
        ("max_hedges", 1.5),
        ("budget_ratio", 0),
        ("budget_ratio", 1.5),
        ("budget_burst", 0.5),
        ("min_samples", 0),
        ("window", 10),  # below min_samples (100)
        ("breaker", object()),
        ("key", "origin"),
        ("clock", 3),
        ("sleep", None),
    ],
)
def test_bad_options_are_a_config_error_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"Hedge\({option}=\.\.\.\)"):
        Hedge(**{option: value})  # type: ignore[arg-type]


def test_repr_and_an_empty_snapshot() -> None:
    assert repr(Hedge()) == "Hedge(quantile=0.95, budget_ratio=0.1)"
    assert repr(Hedge(delay=0.05)) == "Hedge(delay=0.05, budget_ratio=0.1)"
    assert Hedge().snapshot() == {}
    assert Hedge().name == "hedge"


async def test_a_client_error_from_the_hedge_does_not_end_the_race() -> None:
    upstream = Upstream(httpx.Response(200, json={"by": "primary"}), httpx.Response(404))
    pipeline, _, _ = make(upstream, delay=0.0)
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    await settle()
    upstream.release(1)
    await settle()
    assert not task.done()
    upstream.release(0)
    assert (await task).unwrap().json() == {"by": "primary"}
