"""CircuitBreaker failure-rate mode: the sliding window, slow calls, several half-open probes,
the growing break, the transition events, sharing through a store, and option checks."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from httprail import (
    BreakerEvent,
    CircuitBreakerOpenError,
    CircuitState,
    ConfigError,
    Event,
    Failure,
    HttpSettings,
    InvalidRequestError,
    Pipeline,
    RequestError,
    ServerStatusError,
    Success,
)
from httprail.middleware import CircuitBreaker
from httprail.middleware._circuit_breaker import BreakerRecord
from httprail.state import MemoryStore
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/items"
UPSTREAM = "https://api.test"
OPEN = CircuitState.OPEN
CLOSED = CircuitState.CLOSED
HALF_OPEN = CircuitState.HALF_OPEN


class Upstream:
    """A terminal whose answers the test sets: a status, an error, a duration on the fake
    clock, and an optional gate that holds every call until released. Counts calls in flight."""

    def __init__(self, clock: FakeClock, status: int = 200) -> None:
        self.clock = clock
        self.status = status
        self.error: RequestError | None = None
        self.takes = 0.0
        self.gate: asyncio.Event | None = None
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response | RequestError:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        status, error = self.status, self.error  # decided when the request arrives
        try:
            if self.gate is not None:
                await self.gate.wait()
            self.clock.advance(self.takes)
        finally:
            self.in_flight -= 1
        if error is not None:
            return error
        return httpx.Response(status)


class Rig:
    """A breaker over an ``Upstream`` with a fake clock, collecting the breaker's events."""

    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.upstream = Upstream(self.clock)
        self.events: list[Event] = []
        options.setdefault("failure_threshold", 1000)  # only the ratio trips, unless asked
        options.setdefault("cooldown", 10)
        self.breaker = CircuitBreaker(clock=self.clock, **options)
        self.pipeline = Pipeline(
            [self.breaker], MockTerminal(self.upstream), observers=[self.events.append]
        )

    async def send(self, status: int | None = None) -> Any:
        if status is not None:
            self.upstream.status = status
        return await self.pipeline.send(httpx.Request("GET", URL))

    async def sends(self, *statuses: int) -> list[Any]:
        return [await self.send(status) for status in statuses]

    async def state(self) -> CircuitState:
        return await self.breaker.state(UPSTREAM)

    def moves(self) -> list[tuple[CircuitState, CircuitState, str]]:
        return [(e.old, e.new, e.reason) for e in self.breaker_events()]

    def breaker_events(self) -> list[BreakerEvent]:
        return [e for e in self.events if isinstance(e, BreakerEvent)]


def rejected(outcome: Any) -> CircuitBreakerOpenError | None:
    error = outcome.failure() if isinstance(outcome, Failure) else None
    return error if isinstance(error, CircuitBreakerOpenError) else None


# -- the failure ratio over the window ------------------------------------------------------


async def test_the_ratio_opens_only_once_the_window_holds_min_throughput_calls() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=10, window=10)
    await rig.sends(*[503] * 9)  # a 100% failure ratio, but only 9 calls
    assert await rig.state() is CLOSED
    await rig.send(503)
    assert await rig.state() is OPEN
    assert rig.moves() == [(CLOSED, OPEN, "failure ratio 1.00 over 10 calls in 10s")]
    assert rejected(await rig.send(200)) is not None
    assert rig.upstream.calls == 10


async def test_a_ratio_below_the_threshold_never_opens_and_reaching_it_does() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=10, window=10)
    for _ in range(40):  # 40% failures, spread over 8 s
        await rig.sends(503, 200, 503, 200, 200)
        rig.clock.advance(0.2)
    assert await rig.state() is CLOSED
    assert rig.upstream.calls == 200
    for _ in range(21):  # 80 + 21 failures of 221 calls: 0.457; keep failing until >= 0.5
        await rig.send(503)
    assert await rig.state() is CLOSED
    while await rig.state() is CLOSED:
        await rig.send(503)
    (event,) = rig.breaker_events()
    assert event.calls is not None
    assert event.failure_ratio is not None
    assert event.failure_ratio == pytest.approx(0.5, abs=0.01)
    assert event.reason.startswith("failure ratio 0.5")


async def test_a_success_that_lifts_the_window_to_min_throughput_can_open_it() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=4, window=10)
    await rig.sends(503, 503, 503)
    await rig.send(200)  # 3 of 4 failed: the fourth call, a success, completes the sample
    assert await rig.state() is OPEN
    assert rig.moves()[0][2] == "failure ratio 0.75 over 4 calls in 10s"


async def test_old_failures_leave_the_window() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=10, window=10)
    await rig.sends(*[503] * 8)
    rig.clock.advance(10)  # all eight are now older than the window
    await rig.sends(503, 503)
    assert await rig.state() is CLOSED  # only 2 calls in the window
    await rig.sends(*[503] * 7)
    assert await rig.state() is CLOSED  # 9 calls in the window
    await rig.send(503)
    assert await rig.state() is OPEN
    assert rig.breaker_events()[0].calls == 10


async def test_the_window_slides_bucket_by_bucket() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=10, window=10)
    await rig.sends(*[503] * 5)
    rig.clock.advance(9.5)  # still inside the window: these five count
    await rig.sends(*[503] * 5)
    assert await rig.state() is OPEN


async def test_old_successes_leave_the_window_too() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=10, window=10)
    await rig.sends(*[200] * 50)
    await rig.sends(*[503] * 10)
    assert await rig.state() is CLOSED  # 10 of 60
    rig.clock.advance(10.5)
    await rig.sends(*[503] * 10)
    assert await rig.state() is OPEN  # 10 of 10: the successes have expired
    assert rig.moves()[0][2] == "failure ratio 1.00 over 10 calls in 10s"


async def test_the_window_is_a_fixed_ring_however_long_it_runs() -> None:
    rig = Rig(failure_ratio=0.9, min_throughput=10, window=10)
    for _ in range(300):
        await rig.sends(200, 503)
        rig.clock.advance(0.37)
    current = await rig.breaker.store.get(UPSTREAM)  # 10 buckets and their running sums
    assert current is not None
    assert len(current.calls) == len(current.fails) == 10
    assert current.window_calls == sum(current.calls)
    assert current.window_fails == sum(current.fails)
    assert 0 < current.window_calls <= 2 * 10 / 0.37 + 2


async def test_neutral_outcomes_are_not_counted() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=4, window=10)
    rig.upstream.error = InvalidRequestError("bad")
    for _ in range(10):
        await rig.send()
    rig.upstream.error = None
    await rig.sends(503, 503, 200)
    assert await rig.state() is CLOSED  # 3 calls: the ten neutral ones did not count
    await rig.send(503)
    assert await rig.state() is OPEN


async def test_consecutive_failures_still_open_in_rate_mode() -> None:
    rig = Rig(failure_threshold=3, failure_ratio=0.5, min_throughput=100)
    await rig.sends(200, 200, 503, 503, 503)
    assert await rig.state() is OPEN
    (event,) = rig.breaker_events()
    assert event.reason == "3 consecutive failures"
    assert event.calls == 5
    assert event.failure_ratio == pytest.approx(0.6)


async def test_late_outcomes_from_before_a_trip_do_not_count_after_it_closes() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=2, window=10)
    held = asyncio.Event()
    rig.upstream.gate, rig.upstream.status = held, 503
    stragglers = [asyncio.create_task(rig.send()) for _ in range(2)]
    await asyncio.sleep(0)
    rig.upstream.gate = None
    await rig.sends(503, 503)  # opens
    rig.clock.advance(10)
    await rig.send(200)  # the probe closes it, with an empty window
    held.set()
    assert all(isinstance(o, Failure) for o in await asyncio.gather(*stragglers))
    await rig.send(503)
    assert await rig.state() is CLOSED  # 1 of 1 calls: the two stragglers were not counted


async def test_a_closed_circuit_writes_nothing_on_success_unless_rate_mode_is_on() -> None:
    plain = Rig()
    await plain.sends(200, 200, 200)
    assert isinstance(plain.breaker.store, MemoryStore)
    assert len(plain.breaker.store) == 0
    counting = Rig(failure_ratio=0.5)
    await counting.sends(200, 200, 200)
    assert isinstance(counting.breaker.store, MemoryStore)
    assert counting.breaker.store.snapshot()[UPSTREAM].window_calls == 3


# -- slow calls -------------------------------------------------------------------------------


async def test_slow_successes_count_as_failures_but_the_caller_gets_its_response() -> None:
    rig = Rig(failure_threshold=3, slow_call=2)
    rig.upstream.takes = 2.5
    outcomes = await rig.sends(200, 200, 200)
    assert all(isinstance(o, Success) for o in outcomes)
    assert await rig.state() is OPEN
    assert rig.moves() == [(CLOSED, OPEN, "3 consecutive failures")]


async def test_a_call_exactly_at_the_slow_limit_is_not_slow() -> None:
    rig = Rig(failure_threshold=1, slow_call=2)
    rig.upstream.takes = 2.0
    await rig.sends(200, 200)
    assert await rig.state() is CLOSED


async def test_a_fast_success_resets_the_run_of_slow_calls() -> None:
    rig = Rig(failure_threshold=2, slow_call=2)
    rig.upstream.takes = 3
    await rig.send(200)
    rig.upstream.takes = 0
    await rig.send(200)
    rig.upstream.takes = 3
    await rig.send(200)
    assert await rig.state() is CLOSED


async def test_slow_calls_count_in_the_failure_ratio() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=4, window=60, slow_call=1)
    await rig.sends(200, 200)
    rig.upstream.takes = 5
    await rig.send(200)
    assert await rig.state() is CLOSED
    await rig.send(200)
    assert await rig.state() is OPEN
    assert rig.moves()[0][2] == "failure ratio 0.50 over 4 calls in 60s"


async def test_a_slow_probe_reopens_the_circuit() -> None:
    rig = Rig(failure_threshold=1, slow_call=2, cooldown=10, cooldown_max=100)
    await rig.send(503)
    rig.clock.advance(10)
    rig.upstream.takes = 3
    assert isinstance(await rig.send(200), Success)
    assert await rig.state() is OPEN
    assert rig.moves()[-1] == (HALF_OPEN, OPEN, "probe too slow (3s > 2s)")


# -- several half-open probes -----------------------------------------------------------------


async def trip(rig: Rig) -> None:
    """Open the circuit with one failure (the rig's threshold is 1) and wait out the break."""
    await rig.send(503)
    assert await rig.state() is OPEN
    rig.clock.advance(await _remaining(rig))


async def _remaining(rig: Rig) -> float:
    error = rejected(await rig.pipeline.send(httpx.Request("GET", URL)))
    assert error is not None
    return error.retry_after


async def test_half_open_admits_n_probes_of_twenty_callers_and_closes_after_n_successes() -> None:
    rig = Rig(failure_threshold=1, half_open_probes=3, cooldown=10, cooldown_max=100)
    await trip(rig)
    calls_before = rig.upstream.calls
    rig.upstream.status, rig.upstream.gate = 200, asyncio.Event()
    tasks = [asyncio.create_task(rig.send()) for _ in range(20)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rig.upstream.gate.set()
    outcomes = await asyncio.gather(*tasks)

    assert rig.upstream.calls - calls_before == 3
    assert rig.upstream.most_in_flight == 3
    assert sum(isinstance(o, Success) for o in outcomes) == 3
    refusals = [rejected(o) for o in outcomes if rejected(o) is not None]
    assert len(refusals) == 17
    assert all(e is not None and e.retry_after == 20 for e in refusals)  # a failed probe's break
    assert await rig.state() is CLOSED
    assert rig.moves()[-1] == (HALF_OPEN, CLOSED, "3 probes succeeded")


async def test_sequential_probes_close_only_after_the_nth_success() -> None:
    rig = Rig(failure_threshold=1, half_open_probes=3)
    await trip(rig)
    await rig.send(200)
    assert await rig.state() is HALF_OPEN
    await rig.send(200)
    assert await rig.state() is HALF_OPEN
    await rig.send(200)
    assert await rig.state() is CLOSED


async def test_the_n_plus_first_caller_is_rejected_even_after_some_probes_succeeded() -> None:
    rig = Rig(failure_threshold=1, half_open_probes=2)
    await trip(rig)
    held = asyncio.Event()
    rig.upstream.gate = held
    slow_probe = asyncio.create_task(rig.send(200))
    await asyncio.sleep(0)
    rig.upstream.gate = None
    assert isinstance(await rig.send(200), Success)  # the second probe, done
    assert rejected(await rig.send(200)) is not None  # two probes used: no third one
    held.set()
    assert isinstance(await slow_probe, Success)
    assert await rig.state() is CLOSED


async def test_one_failed_probe_reopens_and_a_later_success_does_not_close() -> None:
    rig = Rig(failure_threshold=1, half_open_probes=3, cooldown=10, cooldown_max=100)
    await trip(rig)
    held = asyncio.Event()
    rig.upstream.gate = held
    late = asyncio.create_task(rig.send(200))  # a probe that will succeed, late
    await asyncio.sleep(0)
    rig.upstream.gate = None
    assert isinstance(await rig.send(200), Success)
    assert isinstance((await rig.send(503)).failure(), ServerStatusError)
    assert await rig.state() is OPEN
    held.set()
    assert isinstance(await late, Success)
    assert await rig.state() is OPEN  # the late success belongs to the failed half-open period
    assert rig.moves()[-1] == (HALF_OPEN, OPEN, "probe failed")


async def test_a_probe_from_an_earlier_half_open_period_does_not_count_in_the_next() -> None:
    rig = Rig(failure_threshold=1, half_open_probes=2, cooldown=10)
    await trip(rig)
    held = asyncio.Event()
    rig.upstream.gate = held
    stale = asyncio.create_task(rig.send(200))
    await asyncio.sleep(0)
    rig.upstream.gate = None
    await rig.send(503)  # the other probe fails: open again
    rig.clock.advance(10)
    rig.upstream.gate = asyncio.Event()
    fresh = asyncio.create_task(rig.send(200))  # the first probe of the new period
    await asyncio.sleep(0)
    held.set()
    assert isinstance(await stale, Success)
    rig.upstream.gate.set()
    assert isinstance(await fresh, Success)
    assert await rig.state() is HALF_OPEN  # one success in this period, two are needed
    assert isinstance(await rig.send(200), Success)
    assert await rig.state() is CLOSED


async def test_a_cancelled_probe_frees_its_slot() -> None:
    rig = Rig(failure_threshold=1, half_open_probes=2)
    await trip(rig)
    rig.upstream.gate = asyncio.Event()
    first = asyncio.create_task(rig.send(200))
    second = asyncio.create_task(rig.send(200))
    await asyncio.sleep(0)
    assert rejected(await rig.send(200)) is not None  # both slots taken
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    rig.upstream.gate.set()
    rig.upstream.gate = None
    assert isinstance(await rig.send(200), Success)  # took the freed slot
    assert isinstance(await second, Success)
    assert await rig.state() is CLOSED
    assert rig.upstream.most_in_flight == 2


async def test_a_neutral_probe_frees_its_slot_without_counting() -> None:
    rig = Rig(failure_threshold=1, half_open_probes=2)
    await trip(rig)
    rig.upstream.error = InvalidRequestError("bad")
    await rig.send()
    await rig.send()
    rig.upstream.error = None
    assert await rig.state() is HALF_OPEN
    await rig.sends(200, 200)
    assert await rig.state() is CLOSED


# -- the growing break ------------------------------------------------------------------------


async def test_the_break_doubles_after_each_failed_probe_up_to_the_cap() -> None:
    rig = Rig(failure_threshold=1, cooldown=10, cooldown_max=35)
    await rig.send(503)
    breaks = []
    for _ in range(4):
        remaining = await _remaining(rig)
        breaks.append(remaining)
        rig.clock.advance(remaining)
        await rig.send(503)  # the probe fails
    assert breaks == [10, 20, 35, 35]
    assert [e.cooldown for e in rig.breaker_events() if e.new is OPEN] == [10, 20, 35, 35, 35]


async def test_retry_after_is_the_time_left_of_the_grown_break() -> None:
    rig = Rig(failure_threshold=1, cooldown=10, cooldown_max=100)
    await trip(rig)
    await rig.send(503)  # failed probe: 20 s
    rig.clock.advance(7)
    error = rejected(await rig.send(200))
    assert error is not None
    assert error.retry_after == pytest.approx(13)
    rig.clock.advance(12.5)
    assert await rig.state() is OPEN
    rig.clock.advance(0.5)
    assert await rig.state() is HALF_OPEN


async def test_closing_resets_the_break_to_the_cooldown() -> None:
    rig = Rig(failure_threshold=1, cooldown=10, cooldown_max=100)
    await trip(rig)
    await rig.send(503)  # 20 s
    rig.clock.advance(20)
    await rig.send(200)  # closes
    await rig.send(503)  # opens again, from CLOSED
    assert await _remaining(rig) == 10


async def test_without_cooldown_max_the_break_never_grows() -> None:
    rig = Rig(failure_threshold=1, cooldown=10)
    await trip(rig)
    await rig.send(503)
    assert await _remaining(rig) == 10


# -- events -----------------------------------------------------------------------------------


async def test_every_transition_is_an_event_with_a_reason() -> None:
    rig = Rig(failure_ratio=0.5, min_throughput=4, window=30, half_open_probes=2, cooldown_max=60)
    await rig.sends(200, 503, 503, 503)
    rig.clock.advance(10)
    await rig.send(503)  # probe fails
    rig.clock.advance(20)
    await rig.sends(200, 200)
    assert rig.moves() == [
        (CLOSED, OPEN, "failure ratio 0.75 over 4 calls in 30s"),
        (OPEN, HALF_OPEN, "cooldown of 10s elapsed"),
        (HALF_OPEN, OPEN, "probe failed"),
        (OPEN, HALF_OPEN, "cooldown of 20s elapsed"),
        (HALF_OPEN, CLOSED, "2 probes succeeded"),
    ]
    events = rig.breaker_events()
    assert all(e.upstream == UPSTREAM and e.request is not None for e in events)
    assert (events[0].failure_ratio, events[0].calls, events[0].cooldown) == (0.75, 4, 10)
    assert events[2].cooldown == 20
    assert events[4].cooldown is None


async def test_a_single_probe_closing_says_probe_succeeded() -> None:
    rig = Rig(failure_threshold=1)
    await trip(rig)
    await rig.send(200)
    assert rig.moves()[-1] == (HALF_OPEN, CLOSED, "probe succeeded")


# -- sharing through a store ------------------------------------------------------------------


async def test_two_breakers_over_one_store_share_the_window_and_the_probes() -> None:
    clock = FakeClock()
    store: MemoryStore[BreakerRecord] = MemoryStore()
    options: dict[str, Any] = {
        "failure_threshold": 1000,
        "failure_ratio": 0.5,
        "min_throughput": 10,
        "cooldown": 10,
        "store": store,
        "clock": clock,
    }
    failing, healthy = Upstream(clock, 503), Upstream(clock, 200)
    first = Pipeline([CircuitBreaker(**options)], MockTerminal(failing))
    second = Pipeline([CircuitBreaker(**options)], MockTerminal(healthy))
    for _ in range(4):
        await second.send(httpx.Request("GET", URL))
    for _ in range(5):
        await first.send(httpx.Request("GET", URL))
    assert store.snapshot()[UPSTREAM].state is CLOSED  # 5 of 9: below min throughput
    await first.send(httpx.Request("GET", URL))
    assert store.snapshot()[UPSTREAM].state is OPEN  # 6 of 10, counted across both
    assert rejected(await second.send(httpx.Request("GET", URL))) is not None
    assert len(store) == 1

    clock.advance(10)
    healthy.gate = asyncio.Event()

    async def probing() -> Any:
        return await second.send(httpx.Request("GET", URL))

    probe = asyncio.create_task(probing())
    await asyncio.sleep(0)
    assert rejected(await first.send(httpx.Request("GET", URL))) is not None  # slot taken
    healthy.gate.set()
    assert isinstance(await probe, Success)
    assert store.snapshot()[UPSTREAM].state is CLOSED
    assert failing.calls == 6


# -- configuration ----------------------------------------------------------------------------


def test_from_settings_maps_every_breaker_setting() -> None:
    settings = HttpSettings(
        circuit_breaker_threshold=7,
        circuit_breaker_cooldown=5,
        circuit_breaker_cooldown_max=80,
        circuit_breaker_failure_ratio=0.1,
        circuit_breaker_window=20,
        circuit_breaker_min_throughput=50,
        circuit_breaker_slow_call=2.5,
        circuit_breaker_half_open_probes=4,
    )
    breaker = CircuitBreaker.from_settings(settings, min_throughput=60)
    assert (breaker.failure_threshold, breaker.cooldown, breaker.cooldown_max) == (7, 5, 80)
    assert (breaker.failure_ratio, breaker.window, breaker.min_throughput) == (0.1, 20, 60)
    assert (breaker.slow_call, breaker.half_open_probes) == (2.5, 4)
    assert breaker.probe_lease == 120  # twice timeout_total (60), at least 120
    assert CircuitBreaker.from_settings(HttpSettings(timeout_total=90)).probe_lease == 180
    assert repr(breaker) == (
        "CircuitBreaker(failure_threshold=7, cooldown=5.0, cooldown_max=80.0, failure_ratio=0.1,"
        " window=20.0, min_throughput=60, slow_call=2.5, half_open_probes=4)"
    )


def test_settings_defaults_leave_rate_mode_off_and_let_the_break_grow() -> None:
    breaker = CircuitBreaker.from_settings(HttpSettings())
    assert breaker.failure_ratio is None
    assert breaker.slow_call is None
    assert (breaker.cooldown, breaker.cooldown_max, breaker.half_open_probes) == (30, 300, 1)
    assert [breaker.break_for(k) for k in range(5)] == [30, 60, 120, 240, 300]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"failure_ratio": 0}, "failure_ratio"),
        ({"failure_ratio": 1.5}, "failure_ratio"),
        ({"failure_ratio": True}, "failure_ratio"),
        ({"failure_ratio": "0.5"}, "failure_ratio"),
        ({"failure_ratio": float("nan")}, "failure_ratio"),
        ({"window": 0}, "window"),
        ({"window": float("inf")}, "window"),
        ({"min_throughput": 0}, "min_throughput"),
        ({"min_throughput": 2.5}, "min_throughput"),
        ({"min_throughput": True}, "min_throughput"),
        ({"slow_call": 0}, "slow_call"),
        ({"slow_call": -1}, "slow_call"),
        ({"slow_call": float("inf")}, "slow_call"),
        ({"half_open_probes": 0}, "half_open_probes"),
        ({"half_open_probes": True}, "half_open_probes"),
        ({"cooldown_max": 0}, "cooldown_max"),
        ({"cooldown_max": float("inf")}, "cooldown_max"),
        ({"cooldown": 60, "cooldown_max": 30}, "cooldown_max"),
    ],
)
def test_bad_options_are_config_errors_naming_the_option(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        CircuitBreaker(**options)


def test_a_cooldown_equal_to_cooldown_max_is_allowed() -> None:
    assert CircuitBreaker(cooldown=30, cooldown_max=30).break_for(3) == 30
