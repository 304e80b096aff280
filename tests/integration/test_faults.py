"""Broken servers give typed Failures within the deadline; no exception escapes the client."""

from __future__ import annotations

import asyncio
import time

import pytest

from httprail import (
    AsyncClient,
    ConnectError,
    Failure,
    MaxRetriesExceededError,
    ProtocolError,
    ReadError,
    RequestError,
    RequestTimeoutError,
    TransportError,
)
from httprail.middleware import Timeout
from httprail.testing import ChaosServer, Fault, Reply

from .conftest import ClientFactory


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.RESET, (ReadError, ProtocolError)),
        (Fault.CLOSE, ProtocolError),
        (Fault.GARBAGE, ProtocolError),
        (Fault.TRUNCATE, ProtocolError),
    ],
)
async def test_broken_connections_map_to_transport_errors(
    chaos_server: ChaosServer,
    make_client: ClientFactory,
    fault: Fault,
    kind: type | tuple[type, ...],
) -> None:
    chaos_server.script("/broken", Reply.fail(fault))
    outcome = await make_client(plugins=[]).get("/broken")
    error = outcome.failure()
    assert isinstance(error, kind)
    assert isinstance(error, TransportError)
    assert chaos_server.count("/broken") == 1


@pytest.mark.parametrize("fault", [Fault.HANG, Fault.HANG_BODY])
async def test_hangs_are_read_timeouts(
    chaos_server: ChaosServer, make_client: ClientFactory, fault: Fault
) -> None:
    chaos_server.script("/hang", Reply.fail(fault))
    start = time.monotonic()
    outcome = await make_client(plugins=[], timeout_read=0.2).get("/hang")
    elapsed = time.monotonic() - start
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "read"
    assert 0.2 <= elapsed < 1.0


async def test_connection_refused_is_a_connect_error() -> None:
    with ChaosServer() as server:
        url = server.url
    async with AsyncClient(url, plugins=[]) as client:
        outcome = await client.get("/")
    assert isinstance(outcome.failure(), ConnectError)


@pytest.mark.parametrize("fault", [Fault.RESET, Fault.CLOSE, Fault.GARBAGE, Fault.TRUNCATE])
async def test_default_stack_retries_idempotent_transport_failures(
    chaos_server: ChaosServer, make_client: ClientFactory, fault: Fault
) -> None:
    chaos_server.script("/broken", Reply.fail(fault), Reply.fail(fault), Reply.json({"ok": 1}))
    outcome = await make_client().get("/broken")
    assert outcome.unwrap().json() == {"ok": 1}
    assert chaos_server.count("/broken") == 3


@pytest.mark.parametrize("deadline", [0.3, 0.5])
async def test_total_deadline_is_on_time(
    chaos_server: ChaosServer, make_client: ClientFactory, deadline: float
) -> None:
    chaos_server.script("/hang", Reply.fail(Fault.HANG))
    client = make_client(plugins=[Timeout(deadline)])
    start = time.monotonic()
    outcome = await client.get("/hang")
    elapsed = time.monotonic() - start
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError)
    assert error.phase == "total"
    # at the deadline, not at the read timeout (30 s): the slack is for a loaded machine
    assert deadline <= elapsed <= deadline + 0.25


async def test_default_stack_bounds_a_hang_by_the_total_deadline(
    chaos_server: ChaosServer, make_client: ClientFactory
) -> None:
    chaos_server.script("/hang", Reply.fail(Fault.HANG))
    start = time.monotonic()
    outcome = await make_client(
        timeout_total=0.6, timeout_read=0.25, timeout_connect=0.25, timeout_pool=0.25
    ).get("/hang")
    elapsed = time.monotonic() - start
    error = outcome.failure()
    assert isinstance(error, RequestTimeoutError | MaxRetriesExceededError)
    # bounded by the total deadline: three attempts of 0.25 s and their backoff would take
    # more than 0.8 s; the rest is slack for a loaded machine
    assert elapsed <= 0.6 + 0.12
    assert chaos_server.count("/hang") >= 2  # read timeouts on GET are retried


FAULT_REPLIES = [
    Reply.fail(Fault.RESET),
    Reply.fail(Fault.CLOSE),
    Reply.fail(Fault.GARBAGE),
    Reply.fail(Fault.TRUNCATE),
    Reply.fail(Fault.HANG),
    Reply.fail(Fault.HANG_BODY),
    Reply.status(500),
    Reply.status(429, retry_after="garbage"),
    Reply.status(503, retry_after_ms="-5"),
    Reply.status(301, headers={"Location": "/elsewhere"}),
    Reply.json({"ok": True}),
]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
async def test_no_exception_escapes_whatever_the_server_does(
    chaos_server: ChaosServer, make_client: ClientFactory, method: str
) -> None:
    client = make_client(
        timeout_total=1.0, timeout_connect=0.5, timeout_pool=0.5, timeout_read=0.1, max_retries=1
    )
    for index, reply in enumerate(FAULT_REPLIES):
        chaos_server.script(f"/f{index}", reply)

    async def one(index: int) -> object:
        return await client.request(method, f"/f{index}", json={"n": index})

    outcomes = await asyncio.wait_for(
        asyncio.gather(*(one(i) for i in range(len(FAULT_REPLIES)))), 5
    )
    for outcome in outcomes:
        if isinstance(outcome, Failure):
            assert isinstance(outcome.failure(), RequestError)
        else:
            assert outcome.unwrap().status_code in (200, 301)  # type: ignore[attr-defined]
