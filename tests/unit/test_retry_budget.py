"""Retry budget: the cap on retries per upstream, its window, and how Retry spends it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from httprail import (
    ClientStatusError,
    ConfigError,
    ConnectionRotatedError,
    Failure,
    HttpSettings,
    MaxRetriesExceededError,
    Outcome,
    Pipeline,
    RequestContext,
    RetryBudgetExhaustedError,
    RetryEvent,
    ServerStatusError,
    Success,
    set_context,
)
from httprail.middleware import (
    CircuitBreaker,
    Retry,
    RetryBudget,
    RetryBudgetSnapshot,
    Timeout,
    default_plugins,
)
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/items"
UPSTREAM = "https://api.test"


def budget(clock: FakeClock, **options: float) -> RetryBudget:
    return RetryBudget(clock=clock, **options)  # type: ignore[arg-type]


def withdraw_all(b: RetryBudget, key: str = UPSTREAM, limit: int = 10_000) -> int:
    """Withdraw until refused; return how many were granted."""
    granted = 0
    while granted < limit and b.try_withdraw(key):
        granted += 1
    return granted


def make(
    terminal: MockTerminal, clock: FakeClock, b: RetryBudget | None, **options: object
) -> Pipeline:
    retry = Retry(sleep=clock.sleep, clock=clock, budget=b, **options)  # type: ignore[arg-type]
    return Pipeline([retry], terminal)


def always(status: int) -> MockTerminal:
    return MockTerminal(lambda request: httpx.Response(status))


def retry_of(plugins: list[object]) -> Retry:
    [retry] = [p for p in plugins if isinstance(p, Retry)]
    return retry


# --- the budget on its own -------------------------------------------------------------------


def test_floor_alone_allows_min_per_second_times_window(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=2, window=5)
    assert b.available(UPSTREAM) == 10
    assert withdraw_all(b) == 10
    assert b.available(UPSTREAM) == 0
    assert not b.try_withdraw(UPSTREAM)


def test_ratio_alone_allows_that_share_of_the_requests(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.2, min_per_second=0, window=10)
    assert not b.try_withdraw(UPSTREAM)  # no traffic, no floor: nothing to spend
    for _ in range(10):
        b.deposit(UPSTREAM)
    assert withdraw_all(b) == 2
    for _ in range(5):
        b.deposit(UPSTREAM)
    assert withdraw_all(b) == 1  # 15 requests * 0.2 = 3 retries in all


def test_ratio_and_floor_add_up_like_finagles_default(fake_clock: FakeClock) -> None:
    b = budget(fake_clock)  # 20% + 10/s over 10 s
    for _ in range(50):
        b.deposit(UPSTREAM)
    assert b.available(UPSTREAM) == 0.2 * 50 + 10 * 10
    assert withdraw_all(b) == 110


def test_ratio_products_are_not_lost_to_float_rounding(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.29, min_per_second=0, window=10)
    for _ in range(100):
        b.deposit(UPSTREAM)
    assert b.available(UPSTREAM) == 29
    assert withdraw_all(b) == 29  # 0.29 * 100 is 28.999999999999996 in floats


def test_a_refused_withdrawal_spends_nothing(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.5, min_per_second=0, window=10)
    b.deposit(UPSTREAM)
    b.deposit(UPSTREAM)
    assert b.try_withdraw(UPSTREAM)
    assert not b.try_withdraw(UPSTREAM)
    assert not b.try_withdraw(UPSTREAM)
    assert b.snapshot()[UPSTREAM] == RetryBudgetSnapshot(requests=2, retries=1, available=0)


def test_spent_retries_come_back_once_they_leave_the_window(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=1, window=10)
    assert withdraw_all(b) == 10
    fake_clock.advance(9)
    assert not b.try_withdraw(UPSTREAM)  # still inside the window
    fake_clock.advance(1)
    assert b.available(UPSTREAM) == 10
    assert withdraw_all(b) == 10


def test_the_window_slides_one_bucket_at_a_time(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=0.4, window=10)  # 4 retries per window
    assert b.try_withdraw(UPSTREAM)
    fake_clock.advance(3)
    assert b.try_withdraw(UPSTREAM)
    assert b.try_withdraw(UPSTREAM)
    assert b.try_withdraw(UPSTREAM)
    assert not b.try_withdraw(UPSTREAM)
    fake_clock.advance(7)  # the first retry (t=0) has left; the three at t=3 have not
    assert withdraw_all(b) == 1
    fake_clock.advance(3)
    assert withdraw_all(b) == 3


def test_old_requests_stop_earning_retries(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.5, min_per_second=0, window=2)
    for _ in range(4):
        b.deposit(UPSTREAM)
    assert b.available(UPSTREAM) == 2
    fake_clock.advance(2)
    assert b.available(UPSTREAM) == 0
    assert not b.try_withdraw(UPSTREAM)


def test_a_long_silence_clears_every_bucket(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=1.0, min_per_second=0, window=1, buckets=4)
    for _ in range(8):
        b.deposit(UPSTREAM)
    fake_clock.advance(3600)
    assert b.available(UPSTREAM) == 0
    b.deposit(UPSTREAM)
    assert withdraw_all(b) == 1


def test_keys_have_separate_budgets(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=0.3, window=10)
    assert withdraw_all(b, "https://a.test") == 3
    assert not b.try_withdraw("https://a.test")
    assert b.available("https://b.test") == 3
    assert withdraw_all(b, "https://b.test") == 3


def test_reading_the_budget_changes_nothing(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.5, min_per_second=0, window=10)
    for _ in range(4):
        b.deposit(UPSTREAM)
    b.try_withdraw(UPSTREAM)
    before = b.snapshot()
    assert before == {UPSTREAM: RetryBudgetSnapshot(requests=4, retries=1, available=1)}
    fake_clock.advance(20)
    assert b.snapshot() == {}  # as of now: the window is empty
    assert b.available(UPSTREAM) == 0
    fake_clock.advance(-20)
    assert b.snapshot() == before  # nothing was cleared by reading
    assert b.available("https://unknown.test") == 0


def test_idle_keys_are_forgotten_after_a_window(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, window=10)
    for n in range(100):
        b.deposit(f"https://host-{n}.test")
    assert b.tracked_keys == 100
    fake_clock.advance(10)
    b.deposit(UPSTREAM)
    assert b.tracked_keys == 1


def test_max_keys_bounds_memory_and_drops_the_least_recently_used(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=0.2, window=10, max_keys=2)
    withdraw_all(b, "https://a.test")
    fake_clock.advance(1)
    withdraw_all(b, "https://b.test")
    fake_clock.advance(1)
    b.deposit("https://a.test")  # a is now the most recently used
    b.deposit("https://c.test")
    assert b.tracked_keys == 2
    assert set(b.snapshot()) == {"https://a.test", "https://c.test"}
    assert b.available("https://a.test") == 0  # a kept its spent retries
    assert b.available("https://b.test") == 2  # b was forgotten: back to the floor


def test_repr_and_settings(fake_clock: FakeClock) -> None:
    settings = HttpSettings(
        retry_budget_ratio=0.5, retry_budget_min_per_second=1, retry_budget_window=4
    )
    b = RetryBudget.from_settings(settings, clock=fake_clock)
    assert (b.ratio, b.min_per_second, b.window) == (0.5, 1.0, 4.0)
    assert repr(b) == "RetryBudget(ratio=0.5, min_per_second=1.0, window=4.0)"
    assert b.available(UPSTREAM) == 4
    assert RetryBudget.from_settings(settings, window=8).window == 8.0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("ratio", -0.1),
        ("ratio", 1.5),
        ("ratio", float("nan")),
        ("ratio", True),
        ("ratio", "0.2"),
        ("min_per_second", -1),
        ("min_per_second", float("inf")),
        ("window", 0),
        ("window", -5),
        ("window", float("inf")),
        ("buckets", 0),
        ("buckets", 2.5),
        ("buckets", True),
        ("max_keys", 0),
        ("clock", 3.0),
    ],
)
def test_bad_arguments_are_config_errors_naming_the_argument(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"RetryBudget\({option}=\.\.\.\)"):
        RetryBudget(**{option: value})  # type: ignore[arg-type]


def test_retry_refuses_a_budget_that_is_not_one() -> None:
    with pytest.raises(ConfigError, match=r"Retry\(budget=\.\.\.\) must be a RetryBudget"):
        Retry(budget=0.2)  # type: ignore[arg-type]


# --- Retry spending the budget ---------------------------------------------------------------


async def test_an_empty_budget_returns_a_typed_failure_at_once(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=0, window=10)
    terminal = always(503)
    outcome = await make(terminal, fake_clock, b).send(httpx.Request("GET", URL))
    match outcome:
        case Failure(RetryBudgetExhaustedError() as error):
            assert isinstance(error, MaxRetriesExceededError)
            assert error.upstream == UPSTREAM
            assert len(error.attempts) == 1
            assert isinstance(error.last, ServerStatusError)
            assert error.__cause__ is error.last
            assert error.request is terminal.requests[0]
            assert str(error) == (
                "retry budget for https://api.test exhausted after 1 attempt; "
                "last error: HTTP 503 Service Unavailable [GET https://api.test/items]"
            )
        case _:
            pytest.fail(f"expected RetryBudgetExhaustedError, got {outcome}")
    assert len(terminal.requests) == 1
    assert fake_clock.sleeps == []  # no backoff was slept before giving up


async def test_retries_stop_when_the_budget_runs_out_mid_call(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=0.2, window=10)  # two retries
    terminal = always(503)
    events: list[object] = []
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(observers=(events.append,)))
    outcome = await make(terminal, fake_clock, b, max_retries=5).send(request)
    error = outcome.failure()
    assert isinstance(error, RetryBudgetExhaustedError)
    assert len(error.attempts) == 3
    assert len(terminal.requests) == 3
    assert len(fake_clock.sleeps) == 2  # one per granted retry, none for the refused one
    assert [e.attempt for e in events if isinstance(e, RetryEvent)] == [1, 2]


async def test_a_success_costs_one_deposit_and_no_retry(fake_clock: FakeClock) -> None:
    b = budget(fake_clock)
    await make(always(200), fake_clock, b).send(httpx.Request("GET", URL))
    assert b.snapshot()[UPSTREAM] == RetryBudgetSnapshot(requests=1, retries=0, available=100)


async def test_failures_that_are_not_retried_spend_nothing(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=0.1, window=10)
    outcome = await make(always(404), fake_clock, b).send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), ClientStatusError)
    post = await make(always(503), fake_clock, b).send(httpx.Request("POST", URL))
    assert isinstance(post.failure(), ServerStatusError)
    assert b.snapshot()[UPSTREAM].retries == 0


async def test_max_retries_still_ends_a_call_the_budget_allowed(fake_clock: FakeClock) -> None:
    b = budget(fake_clock)
    outcome = await make(always(503), fake_clock, b, max_retries=2).send(httpx.Request("GET", URL))
    error = outcome.failure()
    assert type(error) is MaxRetriesExceededError
    assert len(error.attempts) == 3
    assert b.snapshot()[UPSTREAM].retries == 2


async def test_a_retry_stopped_by_the_deadline_spends_nothing(fake_clock: FakeClock) -> None:
    b = budget(fake_clock)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(deadline=fake_clock() + 0.001))
    terminal = MockTerminal.sequence([httpx.Response(503, headers={"Retry-After": "5"})])
    outcome = await make(terminal, fake_clock, b).send(request)
    assert isinstance(outcome.failure(), ServerStatusError)
    assert b.snapshot()[UPSTREAM].retries == 0


async def test_the_budget_key_is_the_contexts_upstream(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=0.1, window=10)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(upstream="search"))
    outcome = await make(always(503), fake_clock, b, max_retries=3).send(request)
    error = outcome.failure()
    assert isinstance(error, RetryBudgetExhaustedError)
    assert error.upstream == "search"
    assert set(b.snapshot()) == {"search"}


async def test_one_budget_is_shared_by_two_retry_stages(fake_clock: FakeClock) -> None:
    shared = budget(fake_clock, ratio=0.0, min_per_second=0.3, window=10)  # three retries
    first = make(always(503), fake_clock, shared, max_retries=3)
    second_terminal = always(503)
    second = make(second_terminal, fake_clock, shared, max_retries=3)
    first_error = (await first.send(httpx.Request("GET", URL))).failure()
    assert type(first_error) is MaxRetriesExceededError  # it spent all three
    second_error = (await second.send(httpx.Request("GET", URL + "/other"))).failure()
    assert isinstance(second_error, RetryBudgetExhaustedError)
    assert len(second_terminal.requests) == 1
    assert shared.snapshot()[UPSTREAM] == RetryBudgetSnapshot(requests=2, retries=3, available=0)


async def test_concurrent_calls_never_overspend(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.2, min_per_second=0, window=10)

    async def slow_503(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(503)

    terminal = MockTerminal(slow_503)
    pipeline = make(terminal, fake_clock, b, max_retries=3)
    outcomes = await asyncio.gather(*(pipeline.send(httpx.Request("GET", URL)) for _ in range(50)))
    assert len(terminal.requests) == 50 + 10  # 20% of 50 requests
    exhausted = [o for o in outcomes if isinstance(o.failure(), RetryBudgetExhaustedError)]
    assert len(exhausted) >= 50 - 10 // 3


async def test_cancellation_during_a_budgeted_retry_propagates(fake_clock: FakeClock) -> None:
    b = budget(fake_clock)
    started = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        started.set()
        await asyncio.Event().wait()

    retry = Retry(sleep=sleep_forever, clock=fake_clock, budget=b)
    pipeline = Pipeline([retry], always(503))

    async def call() -> Outcome:
        return await pipeline.send(httpx.Request("GET", URL))

    task = asyncio.create_task(call())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.snapshot()[UPSTREAM].retries == 1


# --- where the budget comes from -------------------------------------------------------------


def test_a_hand_built_retry_has_no_budget() -> None:
    assert Retry().budget is None


async def test_from_settings_gives_each_stage_its_own_budget_on_its_clock(
    fake_clock: FakeClock,
) -> None:
    settings = HttpSettings(retry_budget_ratio=0.5, retry_budget_min_per_second=0.1)
    one = Retry.from_settings(settings, clock=fake_clock, sleep=fake_clock.sleep)
    two = Retry.from_settings(settings)
    assert isinstance(one.budget, RetryBudget)
    assert isinstance(two.budget, RetryBudget)
    assert one.budget is not two.budget
    assert (one.budget.ratio, one.budget.min_per_second, one.budget.window) == (0.5, 0.1, 10.0)
    await Pipeline([one], always(503)).send(httpx.Request("GET", URL))
    assert one.budget.snapshot()[UPSTREAM].retries == 1
    fake_clock.advance(10)  # the budget reads the stage's clock: the retry has expired
    assert one.budget.available(UPSTREAM) == 1


def test_from_settings_honours_an_explicit_budget_or_none() -> None:
    shared = RetryBudget()
    settings = HttpSettings()
    assert Retry.from_settings(settings, budget=shared).budget is shared
    assert Retry.from_settings(settings, budget=None).budget is None
    assert Retry.from_settings(HttpSettings(retry_budget=False)).budget is None


def test_the_default_stack_has_a_budget() -> None:
    plugins = default_plugins(HttpSettings())
    retry = retry_of(plugins)  # type: ignore[arg-type]
    assert isinstance(retry.budget, RetryBudget)
    assert repr(retry.budget) == "RetryBudget(ratio=0.2, min_per_second=10.0, window=10.0)"
    assert any(isinstance(p, CircuitBreaker) for p in plugins)


def test_http_retry_budget_false_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_RETRY_BUDGET", "false")
    assert retry_of(default_plugins()).budget is None  # type: ignore[arg-type]
    monkeypatch.setenv("HTTP_RETRY_BUDGET", "true")
    monkeypatch.setenv("HTTP_RETRY_BUDGET_RATIO", "0.05")
    budget_ = retry_of(default_plugins()).budget  # type: ignore[arg-type]
    assert budget_ is not None
    assert budget_.ratio == 0.05


@pytest.mark.parametrize("start", [0.0, 1000.0, 1e9])
async def test_default_stack_in_an_outage_stops_retrying_at_the_budget(start: float) -> None:
    """The default stack, on one injected clock (its total timeout's deadline and its retry
    read the same fake time, whatever the machine's uptime), stops at the retry budget."""
    clock = FakeClock(start=start)
    settings = HttpSettings(
        retry_budget_min_per_second=0.1, circuit_breaker_threshold=1000, max_retries=3
    )
    terminal = always(503)
    pipeline = Pipeline(default_plugins(settings, clock=clock, sleep=clock.sleep), terminal)
    outcomes = [await pipeline.send(httpx.Request("GET", URL)) for _ in range(20)]
    # floor: 0.1/s * 10 s = 1 retry; ratio: 20% of 20 requests = 4 retries
    assert len(terminal.requests) <= 20 + 4 + 1
    assert isinstance(outcomes[-1].failure(), RetryBudgetExhaustedError)
    assert all(not isinstance(o, Success) for o in outcomes)


def test_the_default_stack_reads_one_injected_clock() -> None:
    """Every stage of the default stack that compares times (both timeouts, retry, its budget,
    the breaker) reads the clock given to ``default_plugins``."""
    clock = FakeClock()
    settings = HttpSettings(timeout_attempt=5)
    plugins = default_plugins(settings, clock=clock, sleep=clock.sleep)
    readers: list[object] = [p for p in plugins if isinstance(p, Timeout | Retry | CircuitBreaker)]
    retry = retry_of(plugins)  # type: ignore[arg-type]
    assert retry.budget is not None
    readers.append(retry.budget)
    names = sorted(type(p).__name__ for p in readers)
    assert names == ["CircuitBreaker", "Retry", "RetryBudget", "Timeout", "Timeout"]
    assert all(p._clock is clock for p in readers)  # type: ignore[attr-defined]
    assert retry._sleep == clock.sleep


class _Shared:
    """A shared budget store answering from a script: ``(spent, shared requests)`` or None."""

    def __init__(self, answers: list[tuple[bool, int] | None]) -> None:
        self.answers = answers
        self.deposits = 0
        self.spent = 0

    async def budget_spend(
        self,
        key: str,
        deposits: int,
        *,
        withdraw: bool,
        ratio: float,
        reserve: float,
        window: float,
        buckets: int,
        spent: int = 0,
    ) -> tuple[bool, int] | None:
        self.deposits += deposits
        self.spent += spent
        return self.answers.pop(0) if withdraw else (False, self.deposits)


async def test_an_unreachable_shared_budget_decides_with_this_process_share_of_the_floor(
    fake_clock: FakeClock,
) -> None:
    """With a store, a withdrawal the store does not answer is decided with this process's
    counts and its part of the floor (own requests / every process's, as last answered): ten
    of a hundred shared requests give a tenth of a floor of 20, so 2 + 20% of 10 = 4 retries."""
    store = _Shared([(True, 100)] + [None] * 10)
    shared = RetryBudget(ratio=0.2, min_per_second=2, window=10, clock=fake_clock, store=store)
    for _ in range(10):
        shared.deposit(UPSTREAM)
    assert await shared.withdraw(UPSTREAM) is True  # the store: 10 of its 100 requests are ours
    local = [await shared.withdraw(UPSTREAM) for _ in range(10)]
    assert local == [True] * 3 + [False] * 7  # own 1 spent + 3 = 0.2 * 10 + 20 * 0.1
    store.answers.append((False, 100))
    await shared.withdraw(UPSTREAM)  # the store answers again: told of the 3 spent alone
    assert store.spent == 3


async def test_an_unreachable_shared_budget_never_answered_keeps_the_whole_floor(
    fake_clock: FakeClock,
) -> None:
    """A store that never answered gives no share to go by: the whole floor is this process's,
    as without a store."""
    store = _Shared([None] * 30)
    shared = RetryBudget(ratio=0.2, min_per_second=2, window=10, clock=fake_clock, store=store)
    spent = [await shared.withdraw(UPSTREAM) for _ in range(30)]
    assert spent.count(True) == 20


def _rotated(request: httpx.Request) -> ConnectionRotatedError:
    return ConnectionRotatedError("the server closed a used connection", request=request)


async def test_a_rotation_first_does_not_free_the_later_retries_from_the_budget(
    fake_clock: FakeClock,
) -> None:
    """A first attempt on a rotated connection used to switch the budget off for the whole
    call: the 503s after it were retried max_retries times, unbudgeted. The rotation's retry
    is free; each 503's is paid."""
    b = budget(fake_clock, ratio=0.0, min_per_second=0.2, window=10)  # two paid retries
    answers = iter([_rotated, *[lambda _request: httpx.Response(503)] * 10])
    terminal = MockTerminal(lambda request: next(answers)(request))
    outcome = await make(terminal, fake_clock, b, max_retries=8).send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), RetryBudgetExhaustedError)
    assert len(terminal.requests) == 4  # rotated, 503, 503 (two paid retries), 503: refused
    assert b.snapshot()[UPSTREAM].retries == 2


async def test_a_retry_after_a_later_rotation_spends_no_budget(fake_clock: FakeClock) -> None:
    b = budget(fake_clock, ratio=0.0, min_per_second=0.1, window=10)  # one paid retry
    answers = iter([lambda _request: httpx.Response(503), _rotated, lambda _r: httpx.Response(200)])
    terminal = MockTerminal(lambda request: next(answers)(request))
    outcome = await make(terminal, fake_clock, b, max_retries=5).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 3
    assert b.snapshot()[UPSTREAM].retries == 1


async def test_a_call_that_never_reached_the_upstream_takes_its_deposit_back(
    fake_clock: FakeClock,
) -> None:
    b = budget(fake_clock)
    terminal = MockTerminal(_rotated)
    outcome = await make(terminal, fake_clock, b, max_retries=2).send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), MaxRetriesExceededError)
    assert UPSTREAM not in b.snapshot()  # a key with nothing counted is not listed
    once = await make(MockTerminal(_rotated), fake_clock, b, max_retries=0).send(
        httpx.Request("GET", URL)
    )
    assert isinstance(once.failure(), ConnectionRotatedError)
    assert UPSTREAM not in b.snapshot()
    await make(always(200), fake_clock, b).send(httpx.Request("GET", URL))
    assert b.snapshot()[UPSTREAM].requests == 1  # what reaches it is counted
