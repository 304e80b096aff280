"""RateLimiter: pacing, FIFO waits, deadline refusals, cancellation, and the adaptive rate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import tenacity

from httprail import (
    CircuitBreakerOpenError,
    ConfigError,
    ConnectError,
    Next,
    Outcome,
    Pipeline,
    RateLimitedError,
    RequestContext,
    Success,
    set_context,
)
from httprail.middleware import CircuitBreaker, RateLimiter, RateLimitSnapshot, Retry
from httprail.middleware._rate_control import PLATEAU, PLATEAU_STEP, CubicRate
from httprail.testing import FakeClock, MockTerminal

from ._stepping import SteppingClock, request, settle, start

UPSTREAM = "https://api.test"


class Upstream:
    """A terminal that records when each request arrived and answers as scripted."""

    def __init__(self, clock: Any, *answers: httpx.Response | int) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.arrivals: list[tuple[str, float]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.arrivals.append((request.url.path, self.clock()))
        answer = self.answers.pop(0) if self.answers else 200
        if self.gate is not None:
            await self.gate.wait()
        return answer if isinstance(answer, httpx.Response) else httpx.Response(answer)

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.arrivals]

    def times(self, start: float) -> list[float]:
        return [round(at - start, 6) for _, at in self.arrivals]


def too_many(retry_after: str | None = None, **headers: str) -> httpx.Response:
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return httpx.Response(429, headers=headers)


def limiter(clock: Any, **options: Any) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, **options)


def snapshot(stage: RateLimiter, key: str = UPSTREAM) -> RateLimitSnapshot:
    state = stage.snapshot(key)
    assert state is not None
    return state


# -- a fixed rate ----------------------------------------------------------------------------


async def test_a_burst_goes_at_once_then_requests_are_paced() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock)
    pipeline = Pipeline([limiter(clock, rate=10, burst=3)], MockTerminal(upstream))
    tasks = start(pipeline, *(f"/{i}" for i in range(6)))
    await settle()
    assert len(upstream.arrivals) == 3
    for _ in range(3):
        await clock.advance(0.1)
    await asyncio.gather(*tasks)
    assert upstream.times(1000.0) == [0, 0, 0, 0.1, 0.2, 0.3]


async def test_waiters_are_served_in_arrival_order_by_one_timer() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock)
    stage = limiter(clock, rate=1, burst=1)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    tasks = []
    for path in ("/1", "/2", "/3", "/4", "/5"):
        tasks.extend(start(pipeline, path))
        await settle()
    assert snapshot(stage).waiting == 4
    assert clock.sleeping == 1  # one dispatcher sleeps for the whole queue: no herd
    await clock.advance(4.0)
    await asyncio.gather(*tasks)
    assert upstream.paths == ["/1", "/2", "/3", "/4", "/5"]
    assert upstream.times(1000.0) == [0, 1, 2, 3, 4]
    assert clock.sleeping == 0


async def test_a_wait_past_the_deadline_is_refused_at_once_with_its_length() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock)
    stage = limiter(clock, rate=2, burst=1)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    await pipeline.send(request("/first"))
    queued = start(pipeline, "/q1", "/q2", "/q3")  # their turns: +0.5, +1.0, +1.5
    await settle()
    outcome = await pipeline.send(request("/late", deadline=clock() + 1.9))
    error = outcome.failure()
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == pytest.approx(2.0)
    assert error.upstream == UPSTREAM
    assert error.request is not None
    assert error.request.url.path == "/late"
    fits = start(pipeline, "/fits", deadline=clock() + 2.1)
    await clock.advance(2.0)
    await asyncio.gather(*queued, *fits)
    assert upstream.paths == ["/first", "/q1", "/q2", "/q3", "/fits"]
    assert clock.sleeps == [0.5, 0.5, 0.5, 0.5]  # the refusal slept nowhere


async def test_max_wait_bounds_the_wait_and_zero_never_waits() -> None:
    clock = SteppingClock()
    stage = limiter(clock, rate=1, burst=1, max_wait=1.0)
    pipeline = Pipeline([stage], MockTerminal(Upstream(clock)))
    await pipeline.send(request())
    waiting = start(pipeline, "/b")  # waits 1 s: allowed
    await settle()
    refused = (await pipeline.send(request("/c"))).failure()
    assert isinstance(refused, RateLimitedError)
    assert refused.retry_after == pytest.approx(2.0)
    await clock.advance(1.0)
    assert isinstance(await waiting[0], Success)

    never = limiter(clock, rate=1, burst=1, max_wait=0)
    pipeline = Pipeline([never], MockTerminal(Upstream(clock)))
    assert isinstance(await pipeline.send(request()), Success)
    assert isinstance((await pipeline.send(request())).failure(), RateLimitedError)


async def test_the_deadline_keeps_room_for_the_call_itself() -> None:
    clock = FakeClock()

    def slow(req: httpx.Request) -> httpx.Response:
        clock.advance(0.5)  # each call takes 0.5 s: 0.1 s typical after one sample
        return httpx.Response(200)

    stage = limiter(clock, rate=1, burst=1)
    pipeline = Pipeline([stage], MockTerminal(slow))
    await pipeline.send(request())
    now = clock()  # the next turn is 0.5 s away; 2 x 0.1 s is kept for the call
    too_tight = await pipeline.send(request(deadline=now + 0.65))
    assert isinstance(too_tight.failure(), RateLimitedError)
    assert isinstance(await pipeline.send(request(deadline=now + 0.8)), Success)


async def test_keys_are_isolated_and_key_can_group_them() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock)
    stage = limiter(clock, rate=1, burst=1, max_wait=0)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    await pipeline.send(request("/a"))
    assert isinstance(await pipeline.send(request("/b", host="other.test")), Success)
    assert isinstance((await pipeline.send(request("/c"))).failure(), RateLimitedError)
    assert stage.keys() == [UPSTREAM, "https://other.test", UPSTREAM][1:]

    grouped = limiter(clock, rate=1, burst=1, max_wait=0, key=lambda r: "all")
    pipeline = Pipeline([grouped], MockTerminal(upstream))
    await pipeline.send(request("/a"))
    error = (await pipeline.send(request("/b", host="other.test"))).failure()
    assert isinstance(error, RateLimitedError)
    assert error.upstream == "all"
    assert grouped.key_of(request()) == "all"


async def test_least_recently_used_idle_keys_are_forgotten_beyond_max_keys() -> None:
    clock = SteppingClock()
    stage = limiter(clock, rate=1, burst=1, max_keys=2)
    pipeline = Pipeline([stage], MockTerminal(Upstream(clock)))
    for host in ("a.test", "b.test", "a.test", "c.test"):
        await pipeline.send(request(host=host))
        clock.now += 1.0
    assert stage.keys() == ["https://a.test", "https://c.test"]
    assert stage.snapshot("https://b.test") is None

    busy = start(pipeline, "/1", "/2", host="a.test")  # a.test has waiters: it is kept
    await settle()
    await pipeline.send(request(host="d.test"))
    kept = stage.keys()  # a list: the busy key survived the eviction
    assert "https://a.test" in kept
    await clock.advance(2.0)
    await asyncio.gather(*busy)


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock)
    stage = limiter(clock, rate=1, burst=1)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    await pipeline.send(request("/first"))
    b, c = start(pipeline, "/b", "/c")
    await settle()
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    assert snapshot(stage).waiting == 1
    await clock.advance(1.0)
    assert isinstance(await c, Success)
    assert upstream.times(1000.0) == [0, 1]


async def test_a_thousand_cancelled_waiters_leave_nothing_behind() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock)
    stage = limiter(clock, rate=1, burst=1)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    await pipeline.send(request("/first"))
    tasks = start(pipeline, *(f"/{i}" for i in range(1000)))
    await settle()
    assert snapshot(stage).waiting == 1000
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert snapshot(stage).waiting == 0
    assert len(stage._buckets[UPSTREAM].waiters) < 64  # dead entries were dropped
    after = start(pipeline, "/after")
    await clock.advance(1.0)
    assert isinstance(await after[0], Success)
    assert upstream.times(1000.0) == [0, 1]  # the token schedule was not disturbed
    await clock.advance(1.0)
    assert clock.sleeping == 0
    assert stage._buckets[UPSTREAM].idle(clock.now)


async def test_waiters_are_released_if_the_dispatcher_is_cancelled() -> None:
    clock = SteppingClock()
    stage = limiter(clock, rate=1, burst=1)
    pipeline = Pipeline([stage], MockTerminal(Upstream(clock)))
    await pipeline.send(request())
    waiters = start(pipeline, "/b", "/c")
    await settle()
    dispatcher = stage._buckets[UPSTREAM].dispatcher
    assert dispatcher is not None
    dispatcher.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert snapshot(stage).waiting == 0


async def test_each_retry_attempt_takes_a_token() -> None:
    clock = FakeClock()
    upstream = Upstream(clock, 503, 503, 200)
    retry = Retry(max_retries=3, wait=tenacity.wait_fixed(0.2), sleep=clock.sleep, clock=clock)
    pipeline = Pipeline([retry, limiter(clock, rate=1, burst=1)], MockTerminal(upstream))
    assert isinstance(await pipeline.send(request()), Success)
    assert upstream.times(1000.0) == [0, 1, 2]
    assert clock.sleeps == [0.2, pytest.approx(0.8), 0.2, pytest.approx(0.8)]


async def test_refusals_are_neither_retried_nor_counted_by_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    retry = Retry(max_retries=3, sleep=clock.sleep, clock=clock)
    stage = limiter(clock, rate=1, burst=1, max_wait=0)
    pipeline = Pipeline([retry, stage, breaker], MockTerminal(Upstream(clock)))
    await pipeline.send(request())
    for _ in range(3):
        assert isinstance((await pipeline.send(request())).failure(), RateLimitedError)
    assert clock.sleeps == []
    assert (await breaker.state(UPSTREAM)).value == "closed"


async def test_outside_the_breaker_an_open_circuit_costs_a_token_but_no_upstream_call() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=30, clock=clock)
    upstream = Upstream(clock, 503)
    stage = limiter(clock, rate=1, burst=1)
    pipeline = Pipeline([stage, breaker], MockTerminal(upstream))
    await pipeline.send(request())  # opens the circuit
    outcome = await pipeline.send(request())
    assert isinstance(outcome.failure(), CircuitBreakerOpenError)
    assert len(upstream.arrivals) == 1
    assert clock.sleeps == [1.0]  # it waited its turn first


async def test_fixed_mode_never_reads_answers() -> None:
    clock = SteppingClock()
    stage = limiter(clock, rate=5)
    pipeline = Pipeline([stage], MockTerminal(Upstream(clock, too_many("30"))))
    await pipeline.send(request())
    assert snapshot(stage) == RateLimitSnapshot(rate=5.0, waiting=0, paused_for=0.0, throttles=0)


# -- adaptive mode ---------------------------------------------------------------------------


async def send_spaced(pipeline: Pipeline, clock: Any, count: int, every: float) -> None:
    for index in range(count):
        if index:
            clock.now += every
        await pipeline.send(request(f"/{index}"))


async def test_adaptive_mode_without_a_rate_does_not_limit_until_throttled() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock)
    stage = limiter(clock, adaptive=True)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    await asyncio.gather(*start(pipeline, *(f"/{i}" for i in range(50))))
    assert upstream.times(1000.0) == [0] * 50
    assert snapshot(stage).rate is None


async def test_a_key_paused_by_retry_after_is_not_forgotten_to_make_room() -> None:
    """Beyond ``max_keys`` idle keys are forgotten; a key the server paused is not idle: it
    was dropped, and its next request went out at once, inside the server's Retry-After."""
    clock = SteppingClock()
    stage = limiter(clock, adaptive=True, max_keys=2)
    pipeline = Pipeline([stage], MockTerminal(Upstream(clock, too_many("30"))))
    await pipeline.send(request())
    assert snapshot(stage).paused_for == pytest.approx(30.0)
    for host in ("b.test", "c.test", "d.test"):
        await pipeline.send(request(host=host))
    kept = stage.keys()  # a list
    assert UPSTREAM in kept
    assert snapshot(stage).paused_for == pytest.approx(30.0)
    clock.now += 31.0
    await pipeline.send(request(host="e.test"))  # the pause is over: now it may go
    kept = stage.keys()
    assert UPSTREAM not in kept


async def test_the_first_throttle_cuts_to_half_the_measured_send_rate() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock, *[200] * 10, 429)
    stage = limiter(clock, adaptive=True)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    await send_spaced(pipeline, clock, 11, every=0.1)  # 10 requests/s, the last one refused
    state = snapshot(stage)
    assert state.rate == pytest.approx(5.0)
    assert state.throttles == 1


@pytest.mark.parametrize("status", [429, 503])
async def test_one_cut_per_round(status: int) -> None:
    clock = SteppingClock()
    upstream = Upstream(clock, *[200] * 10, status, status, status)
    stage = limiter(clock, adaptive=True)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    await send_spaced(pipeline, clock, 10, every=0.1)
    upstream.gate = asyncio.Event()
    both = start(pipeline, "/x", "/y")  # sent together, both throttled
    await settle()
    upstream.gate.set()
    await asyncio.gather(*both)
    assert snapshot(stage).throttles == 1
    assert snapshot(stage).rate == pytest.approx(0.5 * 10 / 0.8)  # 12 sends, longest gap out
    clock.now += 1.0
    await pipeline.send(request("/after"))  # sent after the cut: a new round
    assert snapshot(stage).throttles == 2


async def test_other_errors_do_not_move_the_rate_and_statuses_are_configurable() -> None:
    clock = SteppingClock()
    answers: list[Any] = [500, 418, ConnectError("refused")]

    def handler(req: httpx.Request) -> Any:
        answer = answers.pop(0)
        return answer if isinstance(answer, ConnectError) else httpx.Response(answer)

    stage = limiter(clock, adaptive=True)
    pipeline = Pipeline([stage], MockTerminal(handler))
    for _ in range(3):
        await pipeline.send(request())
    assert snapshot(stage).throttles == 0

    teapot = limiter(clock, adaptive=True, throttle_statuses={418})
    pipeline = Pipeline([teapot], MockTerminal(lambda req: httpx.Response(418)))
    await pipeline.send(request())
    assert snapshot(teapot).throttles == 1


async def test_a_raw_status_answer_counts_too() -> None:
    clock = SteppingClock()
    stage = limiter(clock, adaptive=True)
    pipeline = Pipeline([stage], MockTerminal(lambda req: httpx.Response(429)))
    req = request()
    set_context(req, RequestContext(raw_status=True))
    outcome = await pipeline.send(req)
    assert isinstance(outcome, Success)
    assert snapshot(stage).throttles == 1


async def test_retry_after_pauses_the_whole_key() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock, *[200] * 5, too_many("2"))
    stage = limiter(clock, adaptive=True)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    await send_spaced(pipeline, clock, 6, every=0.1)
    throttled_at = clock()
    assert snapshot(stage).paused_for == pytest.approx(2.0)
    clock.now += 0.5
    refused = (await pipeline.send(request("/short", deadline=clock() + 1.0))).failure()
    assert isinstance(refused, RateLimitedError)
    assert refused.retry_after == pytest.approx(1.5)
    waiting = start(pipeline, "/during")
    await clock.advance(1.4)
    assert upstream.paths[-1] == "/5"  # nothing went out during the pause
    await clock.advance(0.1)
    await asyncio.gather(*waiting)
    assert upstream.arrivals[-1] == ("/during", pytest.approx(throttled_at + 2.0))


async def test_a_pause_refuses_queued_callers_that_can_no_longer_make_it() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock, too_many("5"))
    upstream.gate = asyncio.Event()
    stage = limiter(clock, rate=1, burst=1, adaptive=True)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    first = start(pipeline, "/first")
    await settle()
    (short,) = start(pipeline, "/short", deadline=clock() + 3)
    (long,) = start(pipeline, "/long", deadline=clock() + 10)
    await settle()
    assert snapshot(stage).waiting == 2
    upstream.gate.set()  # the first answer: 429, Retry-After: 5
    await asyncio.gather(*first)
    error = (await short).failure()
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == pytest.approx(5.0)
    assert snapshot(stage).waiting == 1
    await clock.advance(5.0)
    assert isinstance(await long, Success)
    assert upstream.times(1000.0) == [0, 5]


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "120"}, 60.0),  # capped by retry_after_max
        ({"Retry-After": "soon"}, 0.0),  # malformed: cut, but no pause
        ({}, 0.0),
    ],
)
async def test_pause_lengths(headers: dict[str, str], pause: float) -> None:
    clock = SteppingClock()
    stage = limiter(clock, adaptive=True)
    pipeline = Pipeline([stage], MockTerminal(lambda req: httpx.Response(429, headers=headers)))
    await pipeline.send(request())
    assert snapshot(stage).paused_for == pytest.approx(pause)
    assert snapshot(stage).throttles == 1


async def test_an_http_date_retry_after_uses_the_wall_clock() -> None:
    clock = SteppingClock()
    wall = datetime(2026, 1, 1, tzinfo=UTC)
    when = format_datetime(wall + timedelta(seconds=7), usegmt=True)
    stage = limiter(clock, adaptive=True, wall_clock=wall.timestamp)
    pipeline = Pipeline([stage], MockTerminal(lambda req: too_many(when)))
    await pipeline.send(request())
    assert snapshot(stage).paused_for == pytest.approx(7.0)


async def test_successes_bring_the_rate_back_after_a_cut() -> None:
    clock = SteppingClock()
    upstream = Upstream(clock, *[200] * 10, 429)
    stage = limiter(clock, adaptive=True)
    pipeline = Pipeline([stage], MockTerminal(upstream))
    await send_spaced(pipeline, clock, 11, every=0.1)
    cut = snapshot(stage).rate
    assert cut == pytest.approx(5.0)
    await send_spaced(pipeline, clock, 4, every=0.2)  # 5/s, as allowed
    grown = snapshot(stage).rate
    assert grown == pytest.approx(5.0 * 2 ** (0.6 / 0.5))  # no known ceiling: slow start


# -- the adaptive rate's curve ---------------------------------------------------------------


def test_slow_start_doubles_until_a_ceiling_is_known() -> None:
    rate = CubicRate(None)
    rate.on_send(100.0)
    rate.on_send(100.1)
    assert rate.on_throttle(100.1, 0, None, False, 0.0)
    assert rate.rate == pytest.approx(5.0)  # half the measured 10 requests/s
    for index in range(11):
        rate.on_send(100.1 + index * 0.05)  # 20/s: demand allows doubling
    assert rate.on_accept(100.6) == pytest.approx(10.0)
    assert rate.on_accept(101.1) == pytest.approx(20.0)
    assert rate.on_accept(101.6) == pytest.approx(40.0)  # twice the 20/s being sent: no more
    assert not rate.on_throttle(101.6, 0, 40.0, True, 0.0)  # sent before the cut: same round
    assert rate.on_throttle(101.6, 1, 40.0, True, 0.0)


def test_with_a_known_ceiling_the_rate_climbs_to_a_plateau_holds_then_probes() -> None:
    rate = CubicRate(10.0)
    assert rate.on_throttle(100.0, 0, 20.0, True, 1.0)  # paced at 20/s, Retry-After: 1
    assert rate.rate == pytest.approx(14.0)  # 0.7 x 20
    plateau = PLATEAU * 20.0
    k = ((plateau - 14.0) / 0.4) ** (1 / 3)  # from 14 to the plateau on SCALE 0.4
    assert rate.k == pytest.approx(k)
    assert rate.hold == pytest.approx(20.0)  # 20 s per second of pause
    assert rate.on_accept(100.5) == pytest.approx(14.0)  # paused: the curve has not started
    assert rate.on_accept(101.0 + k / 2) == pytest.approx(plateau - 0.4 * (k / 2) ** 3)
    assert rate.on_accept(101.0 + k) == pytest.approx(plateau)
    assert rate.on_accept(101.0 + k + 19.0) == pytest.approx(plateau)
    for index in range(11):
        rate.on_send(101.0 + k + 20.0 + index * 0.1)  # demand of 10/s
    assert rate.on_accept(101.0 + k + 21.0) == pytest.approx(plateau + 0.4)  # probing past it
    assert rate.on_accept(101.0 + k + 22.0) == pytest.approx(20.0)  # but not past 2x demand
    assert rate.on_accept(101.0 + k + 30.0) == pytest.approx(20.0)  # nothing sent: no growth


def test_a_throttle_while_holding_steps_down_a_little() -> None:
    rate = CubicRate(10.0)
    rate.on_throttle(100.0, 0, 20.0, True, 1.0)
    held = PLATEAU * 20.0
    assert rate.on_accept(110.0) == pytest.approx(held)  # on the plateau
    assert rate.on_throttle(110.0, 1, held, True, 1.0)
    assert rate.target == pytest.approx(PLATEAU_STEP * held)
    assert rate.rate == pytest.approx(0.7 * held)


def test_a_throttle_on_reaching_the_plateau_cuts_it_as_a_climb_does() -> None:
    rate = CubicRate(10.0)
    rate.on_throttle(100.0, 0, 20.0, True, 1.0)
    plateau = PLATEAU * 20.0
    reached = 101.0 + rate.k
    assert rate.on_accept(reached + 0.5) == pytest.approx(plateau)  # on it, only just
    assert rate.on_throttle(reached + 0.5, 1, plateau, True, 1.0)
    assert rate.target == pytest.approx(PLATEAU * plateau)  # the plateau was too high


def test_a_throttle_before_the_rate_grew_halves_it() -> None:
    rate = CubicRate(10.0)
    rate.on_throttle(100.0, 0, 20.0, True, 0.0)
    assert rate.on_throttle(100.1, 1, 14.0, True, 0.0)  # still at the cut rate
    assert rate.rate == pytest.approx(7.0)
    assert rate.target == pytest.approx(PLATEAU * 14.0)


def test_a_measured_ceiling_is_not_held_and_probing_follows_demand() -> None:
    rate = CubicRate(50.0)
    for index in range(5):
        rate.on_send(100.0 + index * 0.5)  # 2 requests/s: far below the rate
    assert rate.on_throttle(102.0, 0, 50.0, False, 0.0)
    assert rate.rate == pytest.approx(1.0)  # half the 2/s actually sent
    assert (rate.known, rate.hold) == (False, 0.0)
    assert rate.on_accept(103.0) == pytest.approx(1.0)  # nothing sent since: no growth
    for index in range(1, 4):
        rate.on_send(102.0 + index * 0.5)
    assert rate.on_accept(103.6) == pytest.approx(4.0)  # at most twice the measured rate


def test_the_rate_never_falls_below_the_floor() -> None:
    rate = CubicRate(0.6)
    rate.on_throttle(100.0, 0, 0.6, True, 0.0)
    assert rate.rate == 0.5
    assert rate.on_throttle(100.0, 1, 0.5, True, 0.0)
    assert rate.rate == 0.5


# -- construction ----------------------------------------------------------------------------


def test_repr_name_and_snapshot_of_an_unknown_key() -> None:
    stage = RateLimiter(rate=5, burst=2)
    assert repr(stage) == "RateLimiter(rate=5.0, burst=2.0)"
    assert repr(RateLimiter(adaptive=True)) == "RateLimiter(rate=None, burst=None, adaptive=True)"
    assert stage.name == "rate_limit"
    assert stage.snapshot("nowhere") is None


class _Passthrough:
    name = "passthrough"

    async def __call__(self, req: httpx.Request, call_next: Next) -> Outcome:
        return await call_next(req)


async def test_it_is_a_middleware_plugin() -> None:
    """A pipeline takes it as a stage (its plugin check passes) and a request goes through it."""
    limiter = RateLimiter(rate=1)
    pipeline = Pipeline([limiter, _Passthrough()], MockTerminal(lambda r: httpx.Response(200)))
    assert pipeline.find(RateLimiter) is limiter
    outcome = await pipeline.send(httpx.Request("GET", "http://api.test/"))
    assert outcome.unwrap().status_code == 200


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({}, "rate"),
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"rate": True}, "rate"),
        ({"rate": "10"}, "rate"),
        ({"rate": 1, "burst": 0.5}, "burst"),
        ({"rate": 1, "max_wait": -1}, "max_wait"),
        ({"rate": 1, "retry_after_max": 0}, "retry_after_max"),
        ({"rate": 1, "retry_after_max": None}, "retry_after_max"),
        ({"rate": 1, "max_keys": 0}, "max_keys"),
        ({"rate": 1, "throttle_statuses": [99]}, "throttle_statuses"),
        ({"rate": 1, "throttle_statuses": "429"}, "throttle_statuses"),
        ({"rate": 1, "throttle_statuses": None}, "throttle_statuses"),
        ({"rate": 1, "adaptive": "yes"}, "adaptive"),
        ({"rate": 1, "key": "origin"}, "key"),
        ({"rate": 1, "clock": None}, "clock"),
        ({"rate": 1, "sleep": 1}, "sleep"),
        ({"rate": 1, "wall_clock": "now"}, "wall_clock"),
    ],
)
def test_invalid_options_are_config_errors_naming_the_option(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=rf"RateLimiter\({named}=\.\.\.\)"):
        RateLimiter(**options)
