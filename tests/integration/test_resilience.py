"""The default stack against a real fault server: what the server saw and what the caller got."""

from __future__ import annotations

import asyncio
import time

import pytest

from httprail import (
    CircuitBreakerOpenError,
    ClientStatusError,
    Failure,
    MaxRetriesExceededError,
    ServerStatusError,
    Success,
)
from httprail.middleware import CircuitBreaker, Retry
from httprail.testing import ChaosServer, Reply

from .conftest import ClientFactory


async def test_503_503_200_succeeds_after_exactly_three_requests(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/flaky", Reply.status(503), Reply.status(503), Reply.json({"ok": 1}))
    outcome = await make_client().get("/flaky")
    assert outcome.unwrap().json() == {"ok": 1}
    assert chaos_server.count("/flaky") == 3


async def test_404_fails_after_exactly_one_request(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/missing", Reply.status(404, body=b'{"error": "nope"}'))
    outcome = await make_client().get("/missing")
    match outcome:
        case Failure(ClientStatusError(status_code=404) as error):
            assert error.response.json() == {"error": "nope"}
        case _:
            pytest.fail(f"unexpected {outcome}")
    assert chaos_server.count("/missing") == 1


async def test_post_without_idempotency_key_is_sent_once(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/orders", Reply.status(503), Reply.status(201))
    outcome = await make_client().post("/orders", json={"item": 1})
    assert isinstance(outcome.failure(), ServerStatusError)
    assert chaos_server.count("/orders") == 1


async def test_post_with_idempotency_key_is_retried_with_the_same_key_and_body(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/orders", Reply.status(503), Reply.status(201))
    outcome = await make_client().post(
        "/orders", json={"item": 1}, headers={"Idempotency-Key": "order-42"}
    )
    assert outcome.unwrap().status_code == 201
    seen = chaos_server.requests_for("/orders")
    assert [r.header("idempotency-key") for r in seen] == ["order-42", "order-42"]
    assert seen[0].body == seen[1].body == b'{"item":1}'


async def test_exhausted_retries_report_every_attempt(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/down", Reply.status(502))
    outcome = await make_client(max_retries=2).get("/down")
    error = outcome.failure()
    assert isinstance(error, MaxRetriesExceededError)
    assert [e.status_code for e in error.attempts] == [502, 502, 502]  # type: ignore[attr-defined]
    assert chaos_server.count("/down") == 3


@pytest.mark.slow
async def test_retry_after_one_second_is_obeyed_on_the_real_clock(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/limited", Reply.status(429, retry_after="1"), Reply.json({"ok": 1}))
    outcome = await make_client().get("/limited")
    assert isinstance(outcome, Success)
    first, second = chaos_server.requests_for("/limited")
    assert second.time - first.time >= 1.0


async def test_retry_after_ms_is_obeyed(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/limited", Reply.status(429, retry_after_ms="150"), Reply.json({}))
    assert isinstance(await make_client().get("/limited"), Success)
    first, second = chaos_server.requests_for("/limited")
    assert 0.15 <= second.time - first.time < 1.0


async def test_huge_retry_after_fails_at_once(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/limited", Reply.status(503, retry_after="999999"))
    start = time.monotonic()
    outcome = await make_client().get("/limited")
    assert time.monotonic() - start < 0.5
    error = outcome.failure()
    assert isinstance(error, ServerStatusError)
    assert error.response.headers["retry-after"] == "999999"
    assert chaos_server.count("/limited") == 1


async def test_breaker_opens_after_five_failures_and_admits_one_probe_of_twenty(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown=0.3)
    client = make_client(plugins=[Retry(max_retries=0), breaker])
    chaos_server.script("/svc", Reply.status(503))
    for _ in range(5):
        assert isinstance((await client.get("/svc")).failure(), ServerStatusError)
    rejected = (await client.get("/svc")).failure()
    assert isinstance(rejected, CircuitBreakerOpenError)
    assert 0 < rejected.retry_after <= 0.3
    assert chaos_server.count("/svc") == 5

    await asyncio.sleep(0.35)
    chaos_server.script("/svc", Reply.slow(0.2))  # healed, but slow enough to overlap
    outcomes = await asyncio.gather(*(client.get("/svc") for _ in range(20)))
    assert chaos_server.count("/svc") == 6  # exactly one probe reached the server
    assert sum(isinstance(o, Success) for o in outcomes) == 1
    assert (
        sum(
            isinstance(o.failure(), CircuitBreakerOpenError)
            for o in outcomes
            if isinstance(o, Failure)
        )
        == 19
    )
    assert isinstance(await client.get("/svc"), Success)  # the probe closed the circuit
