"""MultiTerminal: the failover rules, per-backend health, the strategies, URL rewriting,
cancellation, closing and argument checks, with in-memory backends and a fake clock."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from returns.result import Success

from httprail import (
    ConfigError,
    ConnectError,
    ConnectionRotatedError,
    DecodeError,
    InvalidRequestError,
    Pipeline,
    ProtocolError,
    ReadError,
    RefusedStreamError,
    RequestContext,
    RequestError,
    RequestTimeoutError,
    TransportError,
    WriteError,
)
from httprail._context import EXTENSION_KEY
from httprail.middleware import IDEMPOTENT_METHODS
from httprail.terminals import Backend, MultiTerminal
from httprail.terminals._multi import IDEMPOTENT
from httprail.testing import FakeClock, MockTerminal

URL = "https://svc.test/items?page=2"
ErrorFactory = Callable[[httpx.Request], RequestError]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def refuse(request: httpx.Request) -> RequestError:
    return ConnectError("connection refused", request=request)


def reset(request: httpx.Request) -> RequestError:
    return ReadError("connection reset", request=request)


def tagged(count: int) -> list[Callable[[httpx.Request], httpx.Response]]:
    """Handlers that answer 200 with their own index as the body."""
    return [lambda r, i=i: httpx.Response(200, text=str(i)) for i in range(count)]


def named(*handlers: Callable[[httpx.Request], Any]) -> tuple[list[MockTerminal], list[Backend]]:
    terminals = [MockTerminal(handler) for handler in handlers]
    backends = [Backend(t, name="abcdefgh"[i]) for i, t in enumerate(terminals)]
    return terminals, backends


def multi(*handlers: Callable[[httpx.Request], Any], **options: Any) -> MultiTerminal:
    return MultiTerminal(named(*handlers)[1], **options)


def counts(terminal: MultiTerminal) -> list[int]:
    return [h.requests for h in terminal.health()]


def states(terminal: MultiTerminal) -> list[str]:
    return [h.state for h in terminal.health()]


# -- failover order and which errors fail over ---------------------------------------------


async def test_failover_uses_the_first_backend_while_it_answers() -> None:
    terminals, backends = named(ok, ok)
    terminal = MultiTerminal(backends)
    for _ in range(3):
        assert isinstance(await terminal.send(httpx.Request("GET", URL)), Success)
    assert [len(t.requests) for t in terminals] == [3, 0]


async def test_connect_error_moves_to_the_next_backend_in_order() -> None:
    terminals, backends = named(refuse, refuse, ok, ok)
    outcome = await MultiTerminal(backends).send(httpx.Request("POST", URL, json={"a": 1}))
    assert outcome.unwrap().status_code == 200
    assert [len(t.requests) for t in terminals] == [1, 1, 1, 0]
    assert terminals[2].requests[0].content == b'{"a":1}'


def timeout(phase: Any) -> ErrorFactory:
    return lambda request: RequestTimeoutError("slow", phase=phase, request=request)


@pytest.mark.parametrize(
    ("error", "method", "headers", "moves_on"),
    [
        (refuse, "POST", {}, True),
        (timeout("connect"), "POST", {}, True),
        (timeout("pool"), "PATCH", {}, True),
        (reset, "GET", {}, True),
        (reset, "PUT", {}, True),
        (reset, "POST", {}, False),
        (reset, "POST", {"Idempotency-Key": "k1"}, True),
        (lambda r: WriteError("broken pipe", request=r), "POST", {}, False),
        (lambda r: WriteError("broken pipe", request=r), "DELETE", {}, True),
        (lambda r: ProtocolError("garbage", request=r), "GET", {}, True),
        (lambda r: TransportError("other", request=r), "POST", {}, False),
        (timeout("read"), "GET", {}, True),
        (timeout("read"), "POST", {}, False),
        (timeout("write"), "HEAD", {}, True),
        (timeout("total"), "GET", {}, False),
        (timeout("attempt"), "GET", {}, False),
        (lambda r: InvalidRequestError("bad", request=r), "GET", {}, False),
        (lambda r: DecodeError("bad body", request=r), "GET", {}, False),
    ],
)
async def test_which_errors_fail_over(
    error: ErrorFactory, method: str, headers: dict[str, str], moves_on: bool
) -> None:
    terminals, backends = named(error, ok)
    request = httpx.Request(method, URL, headers=headers, content=b"x")
    outcome = await MultiTerminal(backends).send(request)
    assert len(terminals[1].requests) == (1 if moves_on else 0)
    if moves_on:
        assert isinstance(outcome, Success)
    else:
        assert isinstance(outcome.failure(), type(error(request)))


@pytest.mark.parametrize("status", [500, 502, 503, 404, 429])
async def test_never_fails_over_on_a_response(status: int) -> None:
    terminals, backends = named(lambda r: httpx.Response(status), ok)
    outcome = await MultiTerminal(backends).send(httpx.Request("GET", URL))
    assert outcome.failure().status_code == status  # type: ignore[attr-defined]
    assert len(terminals[1].requests) == 0


async def test_a_raw_5xx_success_is_returned_as_is() -> None:
    terminals, backends = named(lambda r: httpx.Response(503), ok)
    request = httpx.Request("GET", URL, extensions={EXTENSION_KEY: RequestContext(raw_status=True)})
    outcome = await MultiTerminal(backends).send(request)
    assert outcome.unwrap().status_code == 503
    assert len(terminals[1].requests) == 0


async def test_a_streamed_upload_is_never_sent_twice() -> None:
    async def body() -> Any:
        yield b"chunk"

    terminals, backends = named(refuse, ok)
    outcome = await MultiTerminal(backends).send(httpx.Request("PUT", URL, content=body()))
    assert isinstance(outcome.failure(), ConnectError)
    assert len(terminals[1].requests) == 0


async def test_when_every_backend_fails_the_last_error_is_returned() -> None:
    errors: list[RequestError] = []

    def failing(kind: type[TransportError]) -> ErrorFactory:
        def handler(request: httpx.Request) -> RequestError:
            errors.append(kind("down", request=request))
            return errors[-1]

        return handler

    terminal = multi(failing(ConnectError), failing(ReadError), failing(ConnectError))
    outcome = await terminal.send(httpx.Request("GET", URL))
    assert outcome.failure() is errors[-1]
    assert len(errors) == 3
    assert counts(terminal) == [1, 1, 1]


async def test_a_backend_that_raises_is_a_transport_failure() -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug in a backend")

    terminals, backends = named(explode, ok)
    terminal = MultiTerminal(backends)
    assert isinstance(await terminal.send(httpx.Request("GET", URL)), Success)
    error = terminal.health()[0].last_error
    assert isinstance(error, TransportError)
    assert isinstance(error.__cause__, RuntimeError)
    outcome = await terminal.send(httpx.Request("POST", URL))
    assert isinstance(outcome.failure(), TransportError)  # a POST may have been sent
    assert len(terminals[1].requests) == 1


# -- health ------------------------------------------------------------------------------


async def test_consecutive_transport_failures_mark_a_backend_unhealthy() -> None:
    clock = FakeClock()
    terminals, backends = named(refuse, ok)
    terminal = MultiTerminal(backends, failure_threshold=2, cooldown=10, clock=clock)
    await terminal.send(httpx.Request("GET", URL))
    assert states(terminal) == ["healthy", "healthy"]
    clock.advance(1)
    await terminal.send(httpx.Request("GET", URL))
    a, b = terminal.health()
    assert (a.state, a.healthy, a.consecutive_failures, a.failures) == ("unhealthy", False, 2, 2)
    assert a.last_failure_at == clock.now
    assert a.retry_in == 10
    assert isinstance(a.last_error, ConnectError)
    assert (b.state, b.healthy, b.requests, b.last_error, b.retry_in) == (
        "healthy",
        True,
        2,
        None,
        0,
    )
    for _ in range(5):
        assert isinstance(await terminal.send(httpx.Request("GET", URL)), Success)
    assert [len(t.requests) for t in terminals] == [2, 7]  # skipped while cooling down
    clock.advance(4)
    assert terminal.health()[0].retry_in == 6


async def test_a_response_resets_the_failure_streak() -> None:
    replies = iter([refuse, ok, refuse, lambda r: httpx.Response(500), refuse])
    terminal = multi(lambda r: next(replies)(r), ok, failure_threshold=2)
    for _ in range(5):
        await terminal.send(httpx.Request("GET", URL))
    a = terminal.health()[0]
    assert (a.state, a.consecutive_failures, a.failures) == ("healthy", 1, 3)


async def test_errors_that_are_not_the_backends_fault_do_not_count() -> None:
    terminal = multi(lambda r: InvalidRequestError("bad url", request=r), failure_threshold=1)
    await terminal.send(httpx.Request("GET", URL))
    assert terminal.health()[0].consecutive_failures == 0
    assert states(terminal) == ["healthy"]


@pytest.mark.parametrize("error", [ConnectionRotatedError, RefusedStreamError])
async def test_a_rotated_or_refused_connection_does_not_count_against_the_backend(
    error: type[TransportError],
) -> None:
    """A server rotating its connections is healthy: such errors (``counts_against_upstream``
    false) marked the backend unhealthy and skipped it for the whole cooldown."""
    terminals, backends = named(lambda r: error("rotated", request=r), ok)
    terminal = MultiTerminal(backends, failure_threshold=1, cooldown=30)
    for _ in range(3):
        await terminal.send(httpx.Request("GET", URL))
    a = terminal.health()[0]
    assert (a.state, a.consecutive_failures, a.failures) == ("healthy", 0, 0)
    assert len(terminals[0].requests) == 3


async def test_a_request_refused_unprocessed_fails_over_for_any_method() -> None:
    """``RefusedStreamError``: nothing reached the server, so a POST is safe to send to the
    next backend (it was not, as POST is not idempotent)."""
    terminals, backends = named(lambda r: RefusedStreamError("goaway", request=r), ok)
    outcome = await MultiTerminal(backends).send(httpx.Request("POST", URL, content=b"{}"))
    assert isinstance(outcome, Success)
    assert [len(t.requests) for t in terminals] == [1, 1]


async def test_after_the_cooldown_one_trial_success_makes_it_healthy() -> None:
    clock = FakeClock()
    replies = iter([refuse, ok])
    terminals, backends = named(lambda r: next(replies)(r), ok)
    terminal = MultiTerminal(backends, failure_threshold=1, cooldown=5, clock=clock)
    await terminal.send(httpx.Request("GET", URL))
    assert states(terminal) == ["unhealthy", "healthy"]
    clock.advance(5)
    assert states(terminal) == ["trial", "healthy"]
    outcome = await terminal.send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    assert [len(t.requests) for t in terminals] == [2, 1]  # the trial went to the primary
    assert states(terminal) == ["healthy", "healthy"]


async def test_a_failed_trial_starts_a_new_cooldown_at_once() -> None:
    clock = FakeClock()
    terminals, backends = named(refuse, ok)
    terminal = MultiTerminal(backends, failure_threshold=3, cooldown=5, clock=clock)
    for _ in range(3):
        await terminal.send(httpx.Request("GET", URL))
    clock.advance(6)
    await terminal.send(httpx.Request("GET", URL))  # the trial fails, B answers
    a = terminal.health()[0]
    assert (a.state, a.retry_in, a.consecutive_failures) == ("unhealthy", 5, 4)
    await terminal.send(httpx.Request("GET", URL))
    assert [len(t.requests) for t in terminals] == [4, 5]


async def test_only_one_trial_at_a_time() -> None:
    clock = FakeClock()
    release = asyncio.Event()
    state = {"down": True}

    async def primary(request: httpx.Request) -> httpx.Response | RequestError:
        if state["down"]:
            return refuse(request)
        await release.wait()
        return ok(request)

    terminals, backends = named(primary, ok)
    terminal = MultiTerminal(backends, failure_threshold=1, cooldown=5, clock=clock)
    await terminal.send(httpx.Request("GET", URL))
    state["down"] = False
    clock.advance(5)
    trial = asyncio.create_task(terminal.send(httpx.Request("GET", URL)))
    await asyncio.sleep(0)
    assert len(terminals[0].requests) == 2  # the trial is in flight
    assert states(terminal) == ["trial", "healthy"]
    for _ in range(3):
        assert isinstance(await terminal.send(httpx.Request("GET", URL)), Success)
    assert [len(t.requests) for t in terminals] == [2, 4]
    release.set()
    assert isinstance(await trial, Success)
    assert states(terminal) == ["healthy", "healthy"]


async def test_a_cancelled_trial_frees_the_trial_slot() -> None:
    clock = FakeClock()
    state = {"down": True}

    async def primary(request: httpx.Request) -> httpx.Response | RequestError:
        if state["down"]:
            return refuse(request)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    terminals, backends = named(primary, ok)
    terminal = MultiTerminal(backends, failure_threshold=1, cooldown=5, clock=clock)
    await terminal.send(httpx.Request("GET", URL))
    state["down"] = False
    clock.advance(5)
    trial = asyncio.create_task(terminal.send(httpx.Request("GET", URL)))
    await asyncio.sleep(0)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert states(terminal) == ["trial", "healthy"]
    assert terminal.health()[0].consecutive_failures == 1  # cancellation is no verdict
    state["down"] = True
    await terminal.send(httpx.Request("GET", URL))  # a new trial was let through
    assert len(terminals[0].requests) == 3


async def test_a_trial_with_no_verdict_frees_the_slot() -> None:
    clock = FakeClock()
    replies = iter([refuse, lambda r: InvalidRequestError("bad", request=r), ok])
    terminals, backends = named(lambda r: next(replies)(r), ok)
    terminal = MultiTerminal(backends, failure_threshold=1, cooldown=5, clock=clock)
    await terminal.send(httpx.Request("GET", URL))
    clock.advance(5)
    assert isinstance((await terminal.send(httpx.Request("GET", URL))).failure(), RequestError)
    assert states(terminal) == ["trial", "healthy"]
    assert isinstance(await terminal.send(httpx.Request("GET", URL)), Success)
    assert states(terminal) == ["healthy", "healthy"]
    assert [len(t.requests) for t in terminals] == [3, 1]  # b answered while a cooled down


async def test_when_all_are_unhealthy_the_least_recently_failed_is_tried() -> None:
    clock = FakeClock()
    terminals, backends = named(reset, reset, reset)
    terminal = MultiTerminal(backends, failure_threshold=1, cooldown=60, clock=clock)
    for _ in range(3):  # a POST is not failed over on a read error: a, b, c fail in turn
        clock.advance(1)
        await terminal.send(httpx.Request("POST", URL))
    assert [len(t.requests) for t in terminals] == [1, 1, 1]
    assert states(terminal) == ["unhealthy"] * 3
    clock.advance(1)
    outcome = await terminal.send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), ReadError)
    assert [len(t.requests) for t in terminals] == [2, 1, 1]  # one try, not a failure untried
    clock.advance(1)
    await terminal.send(httpx.Request("GET", URL))
    assert [len(t.requests) for t in terminals] == [2, 2, 1]  # a failed again: b is oldest now


async def test_the_fallback_backend_recovers_on_a_response() -> None:
    clock = FakeClock()
    replies = iter([refuse, ok])
    terminal = multi(lambda r: next(replies)(r), failure_threshold=1, cooldown=60, clock=clock)
    await terminal.send(httpx.Request("GET", URL))
    assert isinstance(await terminal.send(httpx.Request("GET", URL)), Success)
    assert states(terminal) == ["healthy"]


# -- strategies --------------------------------------------------------------------------


async def test_round_robin_is_fair() -> None:
    terminal = multi(ok, ok, ok, strategy="round_robin")
    for _ in range(30):
        await terminal.send(httpx.Request("GET", URL))
    assert counts(terminal) == [10, 10, 10]
    assert [h.name for h in terminal.health()] == ["a", "b", "c"]


async def test_round_robin_order_rotates() -> None:
    terminal = MultiTerminal(named(*tagged(3))[1], strategy="round-robin")
    seen = [(await terminal.send(httpx.Request("GET", URL))).unwrap().text for _ in range(6)]
    assert seen == ["0", "1", "2", "0", "1", "2"]
    assert terminal.strategy == "round_robin"


async def test_round_robin_skips_an_unhealthy_backend_and_stays_fair() -> None:
    clock = FakeClock()
    terminal = multi(ok, refuse, ok, strategy="round_robin", failure_threshold=1, clock=clock)
    for _ in range(3):  # a, then b (refused → fails over to c), then c
        assert isinstance(await terminal.send(httpx.Request("GET", URL)), Success)
    assert states(terminal) == ["healthy", "unhealthy", "healthy"]
    before = counts(terminal)
    for _ in range(20):
        await terminal.send(httpx.Request("GET", URL))
    after = counts(terminal)
    assert [x - y for x, y in zip(after, before, strict=True)] == [10, 0, 10]


async def test_round_robin_fails_over_to_the_next_in_rotation() -> None:
    terminals, backends = named(ok, refuse, ok)
    terminal = MultiTerminal(backends, strategy="round_robin", failure_threshold=5)
    await terminal.send(httpx.Request("GET", URL))  # a
    outcome = await terminal.send(httpx.Request("GET", URL))  # b, then c
    assert isinstance(outcome, Success)
    assert [len(t.requests) for t in terminals] == [1, 1, 1]


async def test_random_with_a_seed_is_reproducible_and_spreads() -> None:
    async def picks(seed: int) -> list[str]:
        terminal = multi(*tagged(3), strategy="random", rng=random.Random(seed))
        return [(await terminal.send(httpx.Request("GET", URL))).unwrap().text for _ in range(60)]

    first, again, other = await picks(7), await picks(7), await picks(8)
    assert first == again
    assert first != other
    assert all(10 <= first.count(tag) <= 30 for tag in "012")


async def test_random_fails_over_to_the_remaining_backends() -> None:
    terminal = multi(refuse, refuse, ok, strategy="random", rng=random.Random(1))
    for _ in range(10):
        assert isinstance(await terminal.send(httpx.Request("GET", URL)), Success)


# -- origins and names -------------------------------------------------------------------


async def test_an_origin_replaces_scheme_host_and_port_and_keeps_the_rest() -> None:
    terminals, _ = named(ok)
    terminal = MultiTerminal([(terminals[0], "http://10.0.0.2:8080")])
    ctx = RequestContext(upstream="svc")
    request = httpx.Request(
        "POST", URL, json={"a": 1}, headers={"X-Trace": "t1"}, extensions={EXTENSION_KEY: ctx}
    )
    outcome = await terminal.send(request)
    sent = terminals[0].requests[0]
    assert str(sent.url) == "http://10.0.0.2:8080/items?page=2"
    assert sent.headers["host"] == "10.0.0.2:8080"
    assert sent.headers["x-trace"] == "t1"
    assert sent.content == b'{"a":1}'
    assert sent.extensions[EXTENSION_KEY] is ctx
    assert outcome.unwrap().request is sent
    assert str(request.url) == URL  # the caller's request is untouched
    assert request.headers["host"] == "svc.test"
    assert terminal.health()[0].origin == "http://10.0.0.2:8080"


async def test_a_default_port_is_dropped_and_the_same_origin_is_not_copied() -> None:
    terminals, _ = named(ok)
    terminal = MultiTerminal([Backend(terminals[0], origin=httpx.URL("https://other.test:443/"))])
    await terminal.send(httpx.Request("GET", URL))
    assert terminals[0].requests[0].headers["host"] == "other.test"
    same = httpx.Request("GET", "https://other.test/x")
    await terminal.send(same)
    assert terminals[0].requests[1] is same


def test_default_names() -> None:
    first, second = MockTerminal(ok), MockTerminal(ok)
    terminal = MultiTerminal(
        [first, second, (first, "http://a.test:81"), Backend(second, "https://b.test", "bee")]
    )
    assert terminal.backends == ("mock#0", "mock#1", "http://a.test:81", "bee")
    assert repr(terminal) == "MultiTerminal(failover: mock#0, mock#1, http://a.test:81, bee)"


def test_the_same_methods_as_retry_are_idempotent() -> None:
    assert IDEMPOTENT == IDEMPOTENT_METHODS


# -- cancellation and closing ------------------------------------------------------------


async def test_cancellation_propagates_and_counts_as_nothing() -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    terminals, backends = named(hang, ok)
    terminal = MultiTerminal(backends, failure_threshold=1)
    task = asyncio.create_task(terminal.send(httpx.Request("GET", URL)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert states(terminal) == ["healthy", "healthy"]
    assert terminal.health()[0].consecutive_failures == 0
    assert len(terminals[1].requests) == 0


async def test_aclose_closes_every_terminal_once() -> None:
    shared, other = MockTerminal(ok), MockTerminal(ok)
    closes: list[str] = []

    async def counting_close(label: str, terminal: MockTerminal) -> None:
        closes.append(label)
        terminal.closed = True

    shared.aclose = lambda: counting_close("shared", shared)  # type: ignore[method-assign]
    other.aclose = lambda: counting_close("other", other)  # type: ignore[method-assign]
    terminal = MultiTerminal([(shared, "http://a.test"), (shared, "http://b.test"), other])
    async with Pipeline([], terminal) as pipeline:
        assert isinstance(await pipeline.send(httpx.Request("GET", URL)), Success)
    assert closes == ["shared", "other"]
    outcome = await terminal.send(httpx.Request("GET", URL))
    assert isinstance(outcome.failure(), InvalidRequestError)
    await terminal.aclose()  # closing twice is harmless


class Broken:
    name = "broken"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def send(self, request: httpx.Request) -> Any:
        return Success(httpx.Response(200))

    async def aclose(self) -> None:
        raise self.error


async def test_aclose_closes_the_others_when_one_raises() -> None:
    after = MockTerminal(ok)
    terminal = MultiTerminal([Broken(OSError("close failed")), after])
    with pytest.raises(OSError, match="close failed"):
        await terminal.aclose()
    assert after.closed


async def test_aclose_reports_every_terminal_that_raised() -> None:
    after = MockTerminal(ok)
    terminal = MultiTerminal([Broken(OSError("one")), Broken(RuntimeError("two")), after])
    with pytest.raises(ExceptionGroup) as info:
        await terminal.aclose()
    assert [str(e) for e in info.value.exceptions] == ["one", "two"]
    assert after.closed


# -- arguments ---------------------------------------------------------------------------

GOOD = [MockTerminal(ok)]


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"strategy": "fastest"}, "strategy"),
        ({"strategy": 3}, "strategy"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": True}, "failure_threshold"),
        ({"failure_threshold": 1.5}, "failure_threshold"),
        ({"cooldown": 0}, "cooldown"),
        ({"cooldown": math.nan}, "cooldown"),
        ({"cooldown": math.inf}, "cooldown"),
        ({"cooldown": True}, "cooldown"),
        ({"cooldown": "5"}, "cooldown"),
        ({"methods": "GET"}, "methods"),
        ({"methods": [1]}, "methods"),
        ({"methods": 5}, "methods"),
        ({"clock": 5}, "clock"),
        ({"rng": 7}, "rng"),
    ],
)
def test_bad_options_are_config_errors_naming_the_option(
    options: dict[str, Any], option: str
) -> None:
    with pytest.raises(ConfigError, match=rf"MultiTerminal\({option}=\.\.\.\)"):
        MultiTerminal(GOOD, **options)


@pytest.mark.parametrize(
    ("backends", "message"),
    [
        ([], "non-empty"),
        ("httpx", "non-empty"),
        (GOOD[0], "non-empty"),
        ([object()], r"\[0\] must be a terminal"),
        ([GOOD[0], "httpx"], r"\[1\] must be a terminal"),
        ([(object(), "http://a.test")], r"\[0\] must be a terminal"),
        ([(GOOD[0], "http://a.test/v1")], r"\[0\]: origin must be"),
        ([(GOOD[0], "ftp://a.test")], "origin must be"),
        ([(GOOD[0], "http://a.test?x=1")], "origin must be"),
        ([(GOOD[0], "http://a.test#top")], "origin must be"),
        ([(GOOD[0], "a.test")], "origin must be"),
        ([(GOOD[0], "http://[::1")], "origin must be"),
        ([(GOOD[0], 8080)], "origin must be"),
        ([Backend(GOOD[0], name="")], "name must be a non-empty str"),
        ([Backend(GOOD[0], name="x"), Backend(GOOD[0], name="x")], r"\[1\]: backend name 'x'"),
        ([Backend(GOOD[0], name="mock#1"), GOOD[0], GOOD[0]], "already used"),
    ],
)
def test_bad_backends_are_config_errors(backends: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"MultiTerminal\(backends=\.\.\.\).*{message}"):
        MultiTerminal(backends)


def test_an_origin_with_credentials_is_refused_without_showing_them() -> None:
    with pytest.raises(ConfigError) as info:
        MultiTerminal([(GOOD[0], "https://user:s3cret@a.test")])
    assert "s3cret" not in str(info.value)


async def test_round_robin_with_every_backend_cooling_down_uses_the_fallback() -> None:
    clock = FakeClock()
    terminal = multi(refuse, refuse, strategy="round_robin", failure_threshold=1, clock=clock)
    await terminal.send(httpx.Request("GET", URL))
    assert states(terminal) == ["unhealthy", "unhealthy"]
    assert isinstance((await terminal.send(httpx.Request("GET", URL))).failure(), ConnectError)
    assert counts(terminal) == [2, 1]


async def test_a_streamed_upload_keeps_its_stream_when_aimed_at_an_origin() -> None:
    async def body() -> Any:
        yield b"chunk"

    terminals, _ = named(ok)
    terminal = MultiTerminal([(terminals[0], "http://10.0.0.3")])
    request = httpx.Request("PUT", URL, content=body())
    assert isinstance(await terminal.send(request), Success)
    sent = terminals[0].requests[0]
    assert sent.stream is request.stream
    assert sent.headers["host"] == "10.0.0.3"
    assert sent.headers["transfer-encoding"] == "chunked"
