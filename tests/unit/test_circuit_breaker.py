"""CircuitBreaker: when it opens, what it counts, the single half-open probe, and its events."""

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
    ConnectError,
    Event,
    Failure,
    HttpSettings,
    InvalidRequestError,
    MaxRetriesExceededError,
    Pipeline,
    RequestError,
    RequestTimeoutError,
    ServerStatusError,
    Success,
)
from httprail.middleware import CircuitBreaker
from httprail.middleware._circuit_breaker import BreakerRecord
from httprail.state import MemoryStore, StateStore
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/items"
UPSTREAM = "https://api.test"


class Switch:
    """A terminal whose next answer the test sets, optionally held until released."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.error: RequestError | None = None
        self.gate: asyncio.Event | None = None
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response | RequestError:
        self.calls += 1
        status, error = self.status, self.error  # decided when the request arrives
        if self.gate is not None:
            await self.gate.wait()
        if error is not None:
            return error
        return httpx.Response(status)


def build(
    switch: Switch, clock: FakeClock, events: list[Event] | None = None, **options: Any
) -> Pipeline:
    options.setdefault("failure_threshold", 3)
    options.setdefault("cooldown", 10)
    breaker = CircuitBreaker(clock=clock, **options)
    observers = [events.append] if events is not None else []
    return Pipeline([breaker], MockTerminal(switch), observers=observers)


async def send(pipeline: Pipeline, url: str = URL) -> Any:
    return await pipeline.send(httpx.Request("GET", url))


async def test_opens_after_threshold_consecutive_failures_and_rejects_without_calling() -> None:
    clock, switch = FakeClock(), Switch(503)
    pipeline = build(switch, clock)
    for _ in range(3):
        assert isinstance((await send(pipeline)).failure(), ServerStatusError)
    clock.advance(4)
    error = (await send(pipeline)).failure()
    assert isinstance(error, CircuitBreakerOpenError)
    assert error.upstream == UPSTREAM
    assert error.retry_after == pytest.approx(6)
    assert error.request is not None
    assert switch.calls == 3


class CountingStore(MemoryStore[BreakerRecord]):
    """A MemoryStore subclass overriding ``get``: the breaker must read through it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, key: str) -> BreakerRecord | None:
        self.reads += 1
        return await super().get(key)


@pytest.mark.parametrize("store_kind", [MemoryStore, CountingStore])
async def test_a_success_resets_the_consecutive_count(
    store_kind: type[MemoryStore[BreakerRecord]],
) -> None:
    # A plain MemoryStore is read without an await (``peek``); a subclass through its ``get``.
    clock, switch, store = FakeClock(), Switch(503), store_kind()
    pipeline = build(switch, clock, store=store)
    for status in (503, 503, 200, 503, 503):
        switch.status = status
        await send(pipeline)
    switch.status = 503
    assert isinstance((await send(pipeline)).failure(), ServerStatusError)  # third in a row
    assert isinstance((await send(pipeline)).failure(), CircuitBreakerOpenError)
    if isinstance(store, CountingStore):
        assert store.reads == 8  # one read per call (7) and one more after the success
    else:
        assert store.peek(UPSTREAM) is not None


async def test_client_errors_prove_the_upstream_alive() -> None:
    clock, switch = FakeClock(), Switch(404)
    pipeline = build(switch, clock, failure_threshold=1)
    for _ in range(5):
        await send(pipeline)
    assert switch.calls == 5
    switch.status = 503
    await send(pipeline)
    assert isinstance((await send(pipeline)).failure(), CircuitBreakerOpenError)


@pytest.mark.parametrize(
    "error",
    [
        ConnectError("refused"),
        RequestTimeoutError("slow", phase="read"),
        RequestTimeoutError("slow", phase="attempt"),
    ],
    ids=["connect", "read-timeout", "attempt-timeout"],
)
async def test_transport_errors_and_timeouts_count(error: RequestError) -> None:
    clock, switch = FakeClock(), Switch()
    switch.error = error
    pipeline = build(switch, clock, failure_threshold=2)
    await send(pipeline)
    await send(pipeline)
    assert isinstance((await send(pipeline)).failure(), CircuitBreakerOpenError)


@pytest.mark.parametrize(
    "error",
    [
        CircuitBreakerOpenError(upstream="inner", retry_after=1),
        InvalidRequestError("bad url"),
    ],
    ids=["inner-breaker", "invalid-request"],
)
async def test_errors_before_the_upstream_count_as_neither(error: RequestError) -> None:
    clock, switch = FakeClock(), Switch(503)
    pipeline = build(switch, clock, failure_threshold=2)
    await send(pipeline)  # one real failure
    switch.error = error
    for _ in range(5):
        await send(pipeline)
    switch.error = None
    assert isinstance((await send(pipeline)).failure(), ServerStatusError)  # the second failure
    assert isinstance((await send(pipeline)).failure(), CircuitBreakerOpenError)


async def test_429_counts_only_when_asked() -> None:
    for count_429, expected in ((False, 4), (True, 2)):
        clock, switch = FakeClock(), Switch(429)
        pipeline = build(switch, clock, failure_threshold=2, count_429=count_429)
        for _ in range(4):
            await send(pipeline)
        assert switch.calls == expected


async def test_custom_failure_test_replaces_the_default() -> None:
    clock, switch = FakeClock(), Switch(503)
    pipeline = build(switch, clock, failure_threshold=1, is_failure=lambda e: False)
    for _ in range(3):
        await send(pipeline)
    assert switch.calls == 3


async def test_exhausted_retries_are_judged_by_their_last_attempt() -> None:
    clock = FakeClock()
    request = httpx.Request("GET", URL)
    last = ServerStatusError(httpx.Response(503, request=request))
    terminal = MockTerminal(lambda r: MaxRetriesExceededError([last, last], request=r))
    pipeline = Pipeline([CircuitBreaker(failure_threshold=1, clock=clock)], terminal)
    await send(pipeline)
    assert isinstance((await send(pipeline)).failure(), CircuitBreakerOpenError)


async def test_upstreams_have_separate_circuits_and_key_can_group_them() -> None:
    clock, switch = FakeClock(), Switch(503)
    pipeline = build(switch, clock, failure_threshold=1)
    await send(pipeline, "https://a.test/x")
    assert isinstance((await send(pipeline, "https://a.test/y")).failure(), CircuitBreakerOpenError)
    assert isinstance((await send(pipeline, "https://b.test/x")).failure(), ServerStatusError)

    grouped = build(Switch(503), FakeClock(), failure_threshold=1, key=lambda r: "all")
    await send(grouped, "https://a.test/x")
    error = (await send(grouped, "https://b.test/x")).failure()
    assert isinstance(error, CircuitBreakerOpenError)
    assert error.upstream == "all"


async def trip(pipeline: Pipeline, clock: FakeClock, switch: Switch) -> None:
    switch.status = 503
    for _ in range(3):
        await send(pipeline)
    clock.advance(10)


async def test_exactly_one_probe_of_twenty_concurrent_callers() -> None:
    clock, switch = FakeClock(), Switch()
    pipeline = build(switch, clock)
    await trip(pipeline, clock, switch)
    calls_before = switch.calls

    switch.status, switch.gate = 200, asyncio.Event()
    tasks = [asyncio.create_task(send(pipeline)) for _ in range(20)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    switch.gate.set()
    outcomes = await asyncio.gather(*tasks)

    assert switch.calls - calls_before == 1
    assert sum(isinstance(o, Success) for o in outcomes) == 1
    rejected = [o.failure() for o in outcomes if isinstance(o, Failure)]
    assert len(rejected) == 19
    assert all(isinstance(e, CircuitBreakerOpenError) for e in rejected)
    switch.gate = None
    assert isinstance(await send(pipeline), Success)  # closed again: no rejection


async def test_failed_probe_reopens_for_a_fresh_cooldown() -> None:
    clock, switch = FakeClock(), Switch()
    events: list[Event] = []
    pipeline = build(switch, clock, events)
    await trip(pipeline, clock, switch)
    assert isinstance((await send(pipeline)).failure(), ServerStatusError)  # the probe fails
    clock.advance(9)
    error = (await send(pipeline)).failure()
    assert isinstance(error, CircuitBreakerOpenError)
    assert error.retry_after == pytest.approx(1)
    moves = [(e.old, e.new) for e in events if isinstance(e, BreakerEvent)]
    assert moves == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.OPEN),
    ]


async def test_transition_events_name_the_upstream_and_the_request() -> None:
    clock, switch = FakeClock(), Switch()
    events: list[Event] = []
    pipeline = build(switch, clock, events)
    await trip(pipeline, clock, switch)
    switch.status = 200
    await send(pipeline)
    breaker_events = [e for e in events if isinstance(e, BreakerEvent)]
    assert [e.new for e in breaker_events] == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
    ]
    assert all(e.upstream == UPSTREAM and e.request is not None for e in breaker_events)
    assert breaker_events[0].reason == "3 consecutive failures"


async def test_a_cancelled_probe_frees_the_slot_without_a_verdict() -> None:
    clock, switch = FakeClock(), Switch()
    pipeline = build(switch, clock)
    await trip(pipeline, clock, switch)
    switch.status, switch.gate = 200, asyncio.Event()
    probe = asyncio.create_task(send(pipeline))
    await asyncio.sleep(0)
    assert isinstance((await send(pipeline)).failure(), CircuitBreakerOpenError)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    switch.gate = None
    assert isinstance(await send(pipeline), Success)  # the next caller became the probe


async def test_a_neutral_probe_frees_the_slot_and_stays_half_open() -> None:
    clock, switch = FakeClock(), Switch()
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10, clock=clock)
    pipeline = Pipeline([breaker], MockTerminal(switch))
    await trip(pipeline, clock, switch)
    switch.error = InvalidRequestError("bad")
    await send(pipeline)
    assert await breaker.state(UPSTREAM) is CircuitState.HALF_OPEN
    switch.error, switch.status = None, 200
    assert isinstance(await send(pipeline), Success)
    assert await breaker.state(UPSTREAM) is CircuitState.CLOSED


async def test_state_reads_half_open_once_the_cooldown_has_passed() -> None:
    clock, switch = FakeClock(), Switch()
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10, clock=clock)
    pipeline = Pipeline([breaker], MockTerminal(switch))
    assert await breaker.state(UPSTREAM) is CircuitState.CLOSED
    switch.status = 503
    for _ in range(3):
        await send(pipeline)
    assert await breaker.state(UPSTREAM) is CircuitState.OPEN
    clock.advance(10)
    assert await breaker.state(UPSTREAM) is CircuitState.HALF_OPEN


async def test_state_lives_in_the_given_store_and_can_be_shared() -> None:
    clock = FakeClock()
    store: MemoryStore[BreakerRecord] = MemoryStore()
    assert isinstance(store, StateStore)
    first = Pipeline(
        [CircuitBreaker(failure_threshold=2, store=store, clock=clock)],
        MockTerminal(lambda r: httpx.Response(503)),
    )
    second_terminal = MockTerminal(lambda r: httpx.Response(200))
    second = Pipeline(
        [CircuitBreaker(failure_threshold=2, store=store, clock=clock)], second_terminal
    )
    await send(first)
    await send(first)
    assert store.snapshot()[UPSTREAM].state is CircuitState.OPEN
    assert len(store) == 1
    assert isinstance((await send(second)).failure(), CircuitBreakerOpenError)
    assert second_terminal.requests == []


def test_from_settings_reads_threshold_and_cooldown() -> None:
    breaker = CircuitBreaker.from_settings(
        HttpSettings(circuit_breaker_threshold=7, circuit_breaker_cooldown=2.5), count_429=True
    )
    assert (breaker.failure_threshold, breaker.cooldown, breaker.count_429) == (7, 2.5, True)
    assert "failure_threshold=7" in repr(breaker)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": True}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"cooldown": 0}, "cooldown"),
        ({"cooldown": float("inf")}, "cooldown"),
        ({"cooldown": "30"}, "cooldown"),
        ({"key": "origin"}, "key"),
        ({"is_failure": 5}, "is_failure"),
        ({"store": {}}, "store"),
    ],
)
def test_bad_options_are_config_errors_naming_the_option(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        CircuitBreaker(**options)


async def test_late_outcomes_from_before_the_trip_do_not_move_an_open_circuit() -> None:
    clock, switch = FakeClock(), Switch(200)
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    pipeline = Pipeline([breaker], MockTerminal(switch))
    held = asyncio.Event()
    switch.gate = held
    slow = asyncio.create_task(send(pipeline))  # admitted while closed, answers 200 later
    await asyncio.sleep(0)
    switch.gate, switch.status = None, 503
    await send(pipeline)  # opens the circuit
    held.set()
    assert isinstance(await slow, Success)
    assert await breaker.state(UPSTREAM) is CircuitState.OPEN


async def test_a_success_resets_failures_counted_while_it_was_in_flight() -> None:
    clock, switch = FakeClock(), Switch(200)
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10, clock=clock)
    pipeline = Pipeline([breaker], MockTerminal(switch))
    held = asyncio.Event()
    switch.gate = held
    slow_success = asyncio.create_task(send(pipeline))  # started before any failure
    await asyncio.sleep(0)
    switch.gate, switch.status = None, 503
    await send(pipeline)
    await send(pipeline)  # two failures while the success is in flight
    held.set()
    assert isinstance(await slow_success, Success)
    await send(pipeline)
    await send(pipeline)  # two more: not three in a row, because the success reset the count
    assert await breaker.state(UPSTREAM) is CircuitState.CLOSED


async def test_a_probe_slot_held_past_its_lease_goes_to_the_next_caller() -> None:
    """Two processes share a store; one dies mid-probe. The other probes once the lease ends."""
    clock, shared = FakeClock(), MemoryStore[BreakerRecord]()
    dead_switch, live_switch = Switch(503), Switch(503)
    options: dict[str, Any] = {"failure_threshold": 3, "cooldown": 10, "probe_lease": 30}
    dead = Pipeline(
        [CircuitBreaker(clock=clock, store=shared, **options)], MockTerminal(dead_switch)
    )
    live = Pipeline(
        [CircuitBreaker(clock=clock, store=shared, **options)], MockTerminal(live_switch)
    )
    for _ in range(3):
        await send(live)  # the shared circuit opens
    clock.advance(10)
    dead_switch.status, dead_switch.gate = 200, asyncio.Event()
    stuck = asyncio.create_task(send(dead))  # takes the one probe slot and never answers
    await asyncio.sleep(0)
    assert dead_switch.calls == 1
    live_switch.status = 200
    clock.advance(29)
    assert isinstance((await send(live)).failure(), CircuitBreakerOpenError)  # lease still on
    clock.advance(1)
    assert isinstance(await send(live), Success)  # the lease ran out: this caller probed
    state = await shared.get(UPSTREAM)
    assert state is not None
    assert state.state is CircuitState.CLOSED
    stuck.cancel()  # (the "dead" process's task, so the test leaves nothing behind)
    with pytest.raises(asyncio.CancelledError):
        await stuck
    assert (await shared.get(UPSTREAM)) == state  # its late end changes nothing


def test_probe_lease_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="probe_lease"):
        CircuitBreaker(probe_lease=0)


class _RecordingStore(MemoryStore[BreakerRecord]):
    """A store with ``record`` (as RedisStore has): notes which writes came through it."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[str] = []
        self.updated = 0

    async def update(self, key: str, change: Any) -> Any:
        self.updated += 1
        return await super().update(key, change)

    async def record(self, key: str, change: Any) -> Any:
        self.recorded.append(key)
        return await MemoryStore.update(self, key, change)


async def test_outcomes_are_written_with_the_store_record_and_admissions_with_update() -> None:
    """Failures and probe results go through a store's ``record`` (a write that must land);
    the half-open admission, which must not be kept when late, through ``update``."""
    clock = FakeClock()
    store = _RecordingStore()
    switch = MockTerminal(lambda r: httpx.Response(503))
    pipeline = Pipeline(
        [CircuitBreaker(failure_threshold=2, cooldown=1, store=store, clock=clock)], switch
    )
    await send(pipeline)
    await send(pipeline)
    assert store.recorded == [UPSTREAM, UPSTREAM]
    assert store.updated == 0
    clock.advance(1)
    await send(pipeline)  # the probe: admitted by update, its failure recorded
    assert store.updated == 1
    assert len(store.recorded) == 3
    assert store.snapshot()[UPSTREAM].state is CircuitState.OPEN


class _LateStore(MemoryStore[BreakerRecord]):
    """A shared store whose first probe-slot answer comes late: the write lands, the caller
    is told None, and the store records the undo (as RedisStore does)."""

    def __init__(self) -> None:
        super().__init__()
        self.late = 1

    async def try_update(self, key: str, change: Any, undo: Any) -> Any:
        result = await self.update(key, change)
        if self.late:
            self.late -= 1
            await self.update(key, undo)
            return None
        return (result,)


async def test_a_late_probe_slot_turns_the_caller_away_and_the_slot_is_given_back() -> None:
    """With a shared store answering the half-open admission late, the caller is refused
    (retry_after 0, the upstream not called) instead of probing on a stale copy, and the slot
    the late write took is freed: the next caller probes and closes the circuit."""
    clock = FakeClock()
    store = _LateStore()
    statuses = [503, 200]
    switch = MockTerminal(lambda r: httpx.Response(statuses.pop(0)))
    breaker = CircuitBreaker(failure_threshold=1, cooldown=1, store=store, clock=clock)
    pipeline = Pipeline([breaker], switch)
    await send(pipeline)
    clock.advance(1)
    refused = (await send(pipeline)).failure()
    assert isinstance(refused, CircuitBreakerOpenError)
    assert refused.retry_after == 0.0
    assert len(switch.requests) == 1
    assert store.snapshot()[UPSTREAM].probes == 0
    assert isinstance(await send(pipeline), Success)
    assert len(switch.requests) == 2
    assert await breaker.state(UPSTREAM) is CircuitState.CLOSED
