"""The endpoint balancer: one endpoint per attempt, requests rewritten to it, outliers ejected
for a growing time and never the last usable endpoint."""

from __future__ import annotations

import random
from collections import Counter

import httpx
import pytest
from returns.result import Failure, Success

from httprail import (
    AsyncClient,
    ConnectError,
    HttpSettings,
    InvalidRequestError,
    ReadError,
    RequestTimeoutError,
    ServerStatusError,
    StatusError,
)
from httprail.middleware import BearerAuth, Retry
from httprail.services import BalancedTerminal, Balancer, BalancerOptions
from httprail.testing import FakeClock, MockTerminal

BASE = httpx.URL("http://user.internal/api")
A, B, C = (httpx.URL(f"http://10.0.0.{n}:808{n}") for n in (1, 2, 3))


def balancer(*endpoints: httpx.URL, clock: FakeClock | None = None, **options: object) -> Balancer:
    return Balancer(
        BASE,
        endpoints or (A, B, C),
        BalancerOptions.model_validate(options),
        service="user",
        clock=clock or FakeClock(),
        rng=random.Random(7),
    )


def server_error() -> Failure[ServerStatusError]:
    request = httpx.Request("GET", "http://x/")
    response = httpx.Response(503, request=request)
    return Failure(ServerStatusError(response))


def test_round_robin_takes_each_endpoint_in_turn() -> None:
    b = balancer()
    picked = [b.pick().url for _ in range(6)]
    assert Counter(picked) == {A: 2, B: 2, C: 2}
    assert picked[:3] == picked[3:]


def test_least_request_picks_the_less_busy_of_two() -> None:
    b = balancer(policy="least_request")
    b.endpoints[0].in_flight = 5
    b.endpoints[1].in_flight = 5
    picks = Counter(b.pick().url for _ in range(200))
    assert picks[C] > max(picks[A], picks[B])
    assert picks[C] >= 120  # C wins every draw it is in (2 of 3 pairs)


def test_consecutive_failures_eject_an_endpoint_for_a_growing_time() -> None:
    clock = FakeClock()
    b = balancer(clock=clock, consecutive_failures=3, base_ejection_time=10, max_ejection_time=25)
    a = b.endpoints[0]
    for _ in range(2):
        b.record(a, server_error())
    assert b.state(a) == "healthy"
    b.record(a, server_error())
    assert b.state(a) == "ejected"
    assert b.ejected_for(a) == 10
    assert {b.pick().url for _ in range(10)} == {B, C}
    clock.advance(10)
    assert b.state(a) == "healthy"
    assert b.ejected_for(a) is None
    for _ in range(3):
        b.record(a, server_error())
    assert b.ejected_for(a) == 20  # ejected a second time soon after: twice as long
    clock.advance(20)
    for _ in range(3):
        b.record(a, server_error())
    assert b.ejected_for(a) == 25  # capped at max_ejection_time


def test_the_ejection_count_decays_while_the_endpoint_stays_in() -> None:
    clock = FakeClock()
    b = balancer(clock=clock, consecutive_failures=1, base_ejection_time=10)
    a = b.endpoints[0]
    b.record(a, server_error())
    clock.advance(10)
    b.pick()  # it comes back
    clock.advance(100)  # and stays in for ten ejection times
    b.record(a, server_error())
    assert b.ejected_for(a) == 10


def test_a_success_or_a_4xx_resets_the_streak() -> None:
    b = balancer(consecutive_failures=2)
    a = b.endpoints[0]
    request = httpx.Request("GET", "http://x/")
    for answered in (
        Success(httpx.Response(200, request=request)),
        Failure(StatusError.from_response(httpx.Response(404, request=request))),
    ):
        b.record(a, server_error())
        b.record(a, answered)
        b.record(a, server_error())
        assert b.state(a) == "healthy"
        b.record(a, answered)


@pytest.mark.parametrize(
    "outcome",
    [
        Failure(ConnectError("refused")),
        Failure(ReadError("reset")),
        Failure(RequestTimeoutError("slow", phase="read")),
        Success(httpx.Response(502)),  # raw_status: a 5xx answer is still a failure
    ],
    ids=["connect", "read", "timeout", "raw 5xx"],
)
def test_transport_errors_timeouts_and_5xx_count_as_failures(outcome: object) -> None:
    b = balancer(consecutive_failures=1)
    b.record(b.endpoints[0], outcome)  # type: ignore[arg-type]
    assert b.state(b.endpoints[0]) == "ejected"


def test_errors_that_do_not_count_against_the_upstream_say_nothing() -> None:
    b = balancer(consecutive_failures=1)
    b.record(b.endpoints[0], Failure(InvalidRequestError("bad header")))
    assert b.state(b.endpoints[0]) == "healthy"
    assert b.endpoints[0].failures == 0


def test_the_last_usable_endpoint_is_never_ejected() -> None:
    b = balancer(A, B, consecutive_failures=1, max_ejection_percent=100)
    b.record(b.endpoints[0], server_error())
    b.record(b.endpoints[1], server_error())
    assert [b.state(e) for e in b.endpoints] == ["ejected", "healthy"]
    single = balancer(A, consecutive_failures=1)
    single.record(single.endpoints[0], server_error())
    assert single.state(single.endpoints[0]) == "healthy"


def test_max_ejection_percent_bounds_how_many_are_out_but_one_may_always_go() -> None:
    b = balancer(A, B, C, consecutive_failures=1, max_ejection_percent=10)
    for e in b.endpoints:
        b.record(e, server_error())
    assert [b.state(e) for e in b.endpoints] == ["ejected", "healthy", "healthy"]


def test_unhealthy_endpoints_are_skipped_unless_every_one_is() -> None:
    b = balancer()
    b.set_healthy(b.endpoints[0], False)
    assert b.state(b.endpoints[0]) == "unhealthy"
    assert {b.pick().url for _ in range(6)} == {B, C}
    for e in b.endpoints:
        b.set_healthy(e, False)
    assert {b.pick().url for _ in range(6)} == {A, B, C}  # all unhealthy: all used


def test_a_healthy_endpoint_is_not_ejected_when_the_others_are_unhealthy() -> None:
    b = balancer(consecutive_failures=1)
    b.set_healthy(b.endpoints[1], False)
    b.set_healthy(b.endpoints[2], False)
    b.record(b.endpoints[0], server_error())
    assert b.state(b.endpoints[0]) == "healthy"


def test_a_request_is_aimed_at_the_endpoint_keeping_path_query_and_body() -> None:
    b = balancer()
    request = httpx.Request("POST", "http://user.internal/api/users?page=2", content=b"{}")
    aimed = b.aim(request, b.endpoints[1])
    assert str(aimed.url) == "http://10.0.0.2:8082/api/users?page=2"
    assert aimed.headers["host"] == "10.0.0.2:8082"
    assert aimed.content == b"{}"


def test_an_endpoint_with_a_path_serves_the_base_paths_under_its_own() -> None:
    b = balancer(httpx.URL("http://10.0.0.9:8090/v2/"))
    for path, expected in [
        ("/api/users/1?x=1", "http://10.0.0.9:8090/v2/users/1?x=1"),
        ("/api", "http://10.0.0.9:8090/v2"),
        ("/apis/1", "http://10.0.0.9:8090/apis/1"),  # not under the base path: kept
    ]:
        request = httpx.Request("GET", f"http://user.internal{path}")
        assert str(b.aim(request, b.endpoints[0]).url) == expected


def test_a_request_already_at_the_endpoint_is_sent_as_it_is() -> None:
    b = balancer(httpx.URL("http://user.internal"))
    request = httpx.Request("GET", "http://user.internal/api/x")
    assert b.aim(request, b.endpoints[0]) is request


async def test_each_retry_attempt_goes_to_another_endpoint() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return httpx.Response(503 if request.url.host == "10.0.0.1" else 200)

    clock = FakeClock()
    b = balancer(clock=clock)
    terminal = BalancedTerminal(MockTerminal(answer), b)
    retry = Retry(max_retries=3, clock=clock, sleep=clock.sleep)
    async with AsyncClient(BASE, plugins=[retry], terminal=terminal) as client:
        b._turn = -1  # the first pick is A
        outcome = await client.get("/users/1")
    assert isinstance(outcome, Success)
    assert seen == ["10.0.0.1", "10.0.0.2"]
    assert (b.endpoints[0].attempts, b.endpoints[0].in_flight) == (1, 0)


async def test_credentials_bound_to_the_service_reach_its_endpoints_and_nowhere_else() -> None:
    got: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        got.append((str(request.url), request.headers.get("authorization")))
        return httpx.Response(200)

    terminal = BalancedTerminal(MockTerminal(answer), balancer(A, B))
    async with AsyncClient(
        BASE, plugins=[BearerAuth("s3cret")], terminal=terminal, settings=HttpSettings()
    ) as client:
        await client.get("/users/1")
        await client.get("/users/2")
        await client.get("https://elsewhere.example/steal")  # another origin: not balanced
    assert got == [
        ("http://10.0.0.2:8082/api/users/1", "Bearer s3cret"),
        ("http://10.0.0.1:8081/api/users/2", "Bearer s3cret"),
        ("https://elsewhere.example/steal", None),
    ]


async def test_a_terminal_that_raises_is_a_failure_and_the_slot_is_released() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise OSError("broken terminal")

    b = balancer(A, B)
    terminal = BalancedTerminal(MockTerminal(boom), b)
    outcome = await terminal.send(httpx.Request("GET", "http://user.internal/api/x"))
    assert isinstance(outcome, Failure)
    assert sum(e.in_flight for e in b.endpoints) == 0
    await terminal.aclose()
    assert repr(terminal).startswith("BalancedTerminal(")
    assert repr(b.endpoints[0]) == "Endpoint('http://10.0.0.1:8081')"


def test_a_balancer_needs_an_endpoint() -> None:
    with pytest.raises(ValueError, match="at least one endpoint"):
        Balancer(BASE, [])
