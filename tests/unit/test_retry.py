"""Retry: which failures are retried, how long it waits, and what it returns when it stops."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import tenacity
from structlog.testing import capture_logs

from httprail import (
    CircuitBreakerOpenError,
    ClientStatusError,
    ConfigError,
    ConnectError,
    Failure,
    MaxRetriesExceededError,
    Pipeline,
    ReadError,
    RequestContext,
    RequestTimeoutError,
    RetryEvent,
    ServerStatusError,
    Success,
    set_context,
)
from httprail.middleware import NO_RETRY_EXTENSION, Retry
from httprail.middleware._retry import RETRY_STATUSES_EXTENSION
from httprail.testing import FakeClock, MockTerminal

URL = "https://api.test/items"


def responses(*statuses: int | httpx.Response | Exception) -> MockTerminal:
    replies = []
    for item in statuses:
        if isinstance(item, int):
            replies.append(httpx.Response(item))
        else:
            replies.append(item)
    return MockTerminal.sequence(replies)


def make(terminal: MockTerminal, clock: FakeClock, **options: object) -> Pipeline:
    retry = Retry(sleep=clock.sleep, clock=clock, wall_clock=lambda: 1_700_000_000.0, **options)  # type: ignore[arg-type]
    return Pipeline([retry], terminal)


async def test_succeeds_after_two_503s_with_three_attempts(fake_clock: FakeClock) -> None:
    terminal = responses(503, 503, 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 3
    assert len(fake_clock.sleeps) == 2
    # full jitter: attempt n waits within [0, base * 2**(n-1)]
    assert 0 <= fake_clock.sleeps[0] <= 1.0
    assert 0 <= fake_clock.sleeps[1] <= 2.0


async def test_404_is_not_retried(fake_clock: FakeClock) -> None:
    terminal = responses(404, 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    match outcome:
        case Failure(ClientStatusError(status_code=404)):
            pass
        case _:
            pytest.fail(f"expected a 404 failure, got {outcome}")
    assert len(terminal.requests) == 1
    assert fake_clock.sleeps == []


async def test_max_retries_counts_retries_after_the_first_attempt(fake_clock: FakeClock) -> None:
    terminal = responses(503)
    outcome = await make(terminal, fake_clock, max_retries=3).send(httpx.Request("GET", URL))
    assert len(terminal.requests) == 4
    error = outcome.failure()
    assert isinstance(error, MaxRetriesExceededError)
    assert len(error.attempts) == 4
    assert all(isinstance(e, ServerStatusError) for e in error.attempts)
    assert error.__cause__ is error.attempts[-1]
    assert error.last is error.attempts[-1]


async def test_max_retries_zero_sends_once(fake_clock: FakeClock) -> None:
    terminal = responses(503)
    outcome = await make(terminal, fake_clock, max_retries=0).send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), ServerStatusError)
    assert len(terminal.requests) == 1


async def test_attempt_number_is_in_the_context(fake_clock: FakeClock) -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        from httprail import get_context

        seen.append(get_context(request).attempt)
        return httpx.Response(503 if len(seen) < 3 else 200)

    outcome = await make(MockTerminal(handler), fake_clock).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert seen == [1, 2, 3]


async def test_backoff_windows_grow_and_are_capped(fake_clock: FakeClock) -> None:
    terminal = responses(503)
    pipeline = make(terminal, fake_clock, max_retries=6, backoff_base=1.0, backoff_max=4.0)
    await pipeline.send(httpx.Request("GET", URL))
    windows = [1, 2, 4, 4, 4, 4]
    assert len(fake_clock.sleeps) == 6
    for delay, window in zip(fake_clock.sleeps, windows, strict=True):
        assert 0 <= delay <= window


async def test_custom_tenacity_wait_is_used(fake_clock: FakeClock) -> None:
    terminal = responses(503, 503, 200)
    pipeline = make(terminal, fake_clock, wait=tenacity.wait_fixed(0.25))
    await pipeline.send(httpx.Request("GET", URL))
    assert fake_clock.sleeps == [0.25, 0.25]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_idempotent_method_is_not_retried_on_503(
    fake_clock: FakeClock, method: str
) -> None:
    terminal = responses(503, 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request(method, URL, json={"a": 1}))
    assert isinstance(outcome.failure(), ServerStatusError)
    assert len(terminal.requests) == 1


async def test_post_with_idempotency_key_is_retried(fake_clock: FakeClock) -> None:
    terminal = responses(503, 200)
    request = httpx.Request("POST", URL, json={"a": 1}, headers={"Idempotency-Key": "k-1"})
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 2
    assert [r.headers["idempotency-key"] for r in terminal.requests] == ["k-1", "k-1"]
    assert terminal.requests[1].content == b'{"a":1}'


async def test_post_is_retried_when_the_request_was_never_sent(fake_clock: FakeClock) -> None:
    request = httpx.Request("POST", URL, json={})
    terminal = responses(ConnectError("refused", request=request), 200)
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 2


@pytest.mark.parametrize(("phase", "retried"), [("connect", True), ("pool", True), ("read", False)])
async def test_post_is_retried_after_a_timeout_only_when_it_was_never_sent(
    fake_clock: FakeClock, phase: str, retried: bool
) -> None:
    """A connect or pool timeout left the request unsent (``never_processed``); a read did not."""
    request = httpx.Request("POST", URL, json={})
    error = RequestTimeoutError("slow", phase=phase, request=request)  # type: ignore[arg-type]
    assert error.never_processed is retried
    terminal = responses(error, 200)
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome, Success) is retried
    assert len(terminal.requests) == (2 if retried else 1)


async def test_post_is_not_retried_after_a_read_error(fake_clock: FakeClock) -> None:
    request = httpx.Request("POST", URL, json={})
    terminal = responses(ReadError("reset", request=request), 200)
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome.failure(), ReadError)
    assert len(terminal.requests) == 1


async def test_a_post_refused_with_429_is_retried_without_an_idempotency_key(
    fake_clock: FakeClock,
) -> None:
    terminal = responses(httpx.Response(429, headers={"retry-after-ms": "20"}), 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request("POST", URL, json={"a": 1}))
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 2
    assert fake_clock.sleeps == [0.02]
    assert terminal.requests[1].content == b'{"a":1}'


async def test_a_post_is_retried_when_the_server_says_x_should_retry_true(
    fake_clock: FakeClock,
) -> None:
    terminal = responses(httpx.Response(503, headers={"x-should-retry": "true"}), 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request("POST", URL, json={}))
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 2


class Refused(ReadError):
    """A read error the server sent before acting on the request (a GOAWAY refusal)."""

    never_processed = True


async def test_an_error_marked_never_processed_is_retried_for_any_method(
    fake_clock: FakeClock,
) -> None:
    request = httpx.Request("POST", URL, json={})
    marked = ReadError("stream refused", request=request)
    marked.never_processed = True  # set on the instance, as a terminal may
    terminal = responses(Refused("goaway", request=request), marked, 200)
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 3


async def test_529_overloaded_is_retried_by_default(fake_clock: FakeClock) -> None:
    terminal = responses(529, 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 2


async def test_a_request_may_add_statuses_worth_retrying_for_itself(
    fake_clock: FakeClock,
) -> None:
    plain = responses(409, 200)
    outcome = await make(plain, fake_clock).send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), ClientStatusError)
    assert len(plain.requests) == 1
    widened = responses(409, 200)
    request = httpx.Request("GET", URL, extensions={RETRY_STATUSES_EXTENSION: {409}})
    outcome = await make(widened, fake_clock).send(request)
    assert isinstance(outcome, Success)
    assert len(widened.requests) == 2


@pytest.mark.parametrize(
    ("phase", "retried"),
    [("connect", True), ("read", True), ("pool", True), ("attempt", True), ("total", False)],
)
async def test_timeouts_by_phase(fake_clock: FakeClock, phase: str, retried: bool) -> None:
    request = httpx.Request("GET", URL)
    terminal = responses(RequestTimeoutError("slow", phase=phase, request=request), 200)  # type: ignore[arg-type]
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome, Success) is retried
    assert len(terminal.requests) == (2 if retried else 1)


async def test_open_breaker_is_not_retried(fake_clock: FakeClock) -> None:
    request = httpx.Request("GET", URL)
    terminal = responses(CircuitBreakerOpenError(upstream="u", retry_after=3, request=request))
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome.failure(), CircuitBreakerOpenError)
    assert len(terminal.requests) == 1


async def test_streamed_upload_is_never_retried(fake_clock: FakeClock) -> None:
    async def body() -> object:
        yield b"chunk"

    terminal = responses(503, 200)
    request = httpx.Request("PUT", URL, content=body())
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome.failure(), ServerStatusError)
    assert len(terminal.requests) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "150"}, 0.15),
        ({"retry-after-ms": "150", "Retry-After": "9"}, 0.15),
        ({"Retry-After": " 0 "}, 0.0),
    ],
)
async def test_server_requested_delay_is_obeyed(
    fake_clock: FakeClock, headers: dict[str, str], expected: float
) -> None:
    terminal = responses(httpx.Response(429, headers=headers), 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert fake_clock.sleeps == [pytest.approx(expected)]


async def test_retry_after_http_date_is_obeyed(fake_clock: FakeClock) -> None:
    now = datetime.fromtimestamp(1_700_000_000, tz=UTC)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    terminal = responses(httpx.Response(503, headers={"Retry-After": date}), 200)
    await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    assert fake_clock.sleeps == [pytest.approx(7.0)]


async def test_retry_after_date_in_the_past_means_now(fake_clock: FakeClock) -> None:
    terminal = responses(
        httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), 200
    )
    await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    assert fake_clock.sleeps == [0.0]


async def test_malformed_retry_after_falls_back_to_backoff_and_is_logged(
    fake_clock: FakeClock,
) -> None:
    terminal = responses(httpx.Response(503, headers={"Retry-After": "soon-ish"}), 200)
    with capture_logs() as logs:
        outcome = await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert 0 <= fake_clock.sleeps[0] <= 1.0
    assert [entry["event"] for entry in logs] == ["httprail.retry_after_malformed"]
    assert logs[0]["value"] == "soon-ish"


async def test_retry_after_above_the_cap_stops_at_once(fake_clock: FakeClock) -> None:
    terminal = responses(httpx.Response(503, headers={"Retry-After": "999999"}), 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    error = outcome.failure()
    assert isinstance(error, ServerStatusError)
    assert error.response.headers["retry-after"] == "999999"
    assert len(terminal.requests) == 1
    assert fake_clock.sleeps == []


async def test_wait_past_the_deadline_stops_at_once(fake_clock: FakeClock) -> None:
    terminal = responses(httpx.Response(503, headers={"Retry-After": "5"}), 200)
    request = httpx.Request("GET", URL)
    set_context(request, RequestContext(deadline=fake_clock() + 3.0))
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome.failure(), ServerStatusError)
    assert len(terminal.requests) == 1
    assert fake_clock.sleeps == []


async def test_x_should_retry_false_stops(fake_clock: FakeClock) -> None:
    terminal = responses(httpx.Response(503, headers={"x-should-retry": "false"}), 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), ServerStatusError)
    assert len(terminal.requests) == 1


async def test_x_should_retry_true_retries_any_status(fake_clock: FakeClock) -> None:
    terminal = responses(httpx.Response(409, headers={"x-should-retry": "true"}), 200)
    outcome = await make(terminal, fake_clock).send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert len(terminal.requests) == 2


async def test_a_request_may_veto_retrying_some_error_responses(fake_clock: FakeClock) -> None:
    def out_of_quota(response: httpx.Response) -> bool:
        return b"insufficient_quota" in response.content

    quota = httpx.Response(429, content=b'{"error": {"code": "insufficient_quota"}}')
    terminal = responses(quota, 200)
    request = httpx.Request("GET", URL, extensions={NO_RETRY_EXTENSION: out_of_quota})
    outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome.failure(), ClientStatusError)
    assert len(terminal.requests) == 1

    terminal = responses(httpx.Response(429, content=b"slow down"), 200)
    request = httpx.Request("GET", URL, extensions={NO_RETRY_EXTENSION: out_of_quota})
    assert isinstance(await make(terminal, fake_clock).send(request), Success)
    assert len(terminal.requests) == 2


async def test_a_veto_that_raises_is_logged_and_ignored(fake_clock: FakeClock) -> None:
    def broken(response: httpx.Response) -> bool:
        raise RuntimeError("bug in the veto")

    terminal = responses(503, 200)
    request = httpx.Request("GET", URL, extensions={NO_RETRY_EXTENSION: broken})
    with capture_logs() as logs:
        outcome = await make(terminal, fake_clock).send(request)
    assert isinstance(outcome, Success)
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "httprail.retry_veto_failed"
    ]


async def test_each_retry_emits_an_event(fake_clock: FakeClock) -> None:
    events: list[object] = []
    terminal = responses(503, httpx.Response(429, headers={"retry-after-ms": "10"}), 200)
    pipeline = Pipeline(
        [Retry(sleep=fake_clock.sleep, clock=fake_clock)], terminal, observers=[events.append]
    )
    await pipeline.send(httpx.Request("GET", URL))
    assert [type(e) for e in events] == [RetryEvent, RetryEvent]
    first, second = events
    assert isinstance(first, RetryEvent)
    assert isinstance(second, RetryEvent)
    assert (first.attempt, first.delay_source) == (1, "backoff")
    assert (second.attempt, second.delay_source, second.delay) == (2, "retry-after-ms", 0.01)


async def test_cancellation_during_backoff_propagates() -> None:
    terminal = responses(503, 200)
    pipeline = Pipeline(
        [Retry(backoff_base=10, backoff_max=10, wait=tenacity.wait_fixed(10))], terminal
    )
    task = asyncio.create_task(pipeline.send(httpx.Request("GET", URL)))
    while not terminal.requests:  # noqa: ASYNC110
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(terminal.requests) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": True},
        {"backoff_base": 0},
        {"backoff_max": float("nan")},
        {"backoff_base": 5, "backoff_max": 1},
        {"retry_after_max": -3},
        {"retry_statuses": [700]},
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="Retry"):
        Retry(**options)  # type: ignore[arg-type]
