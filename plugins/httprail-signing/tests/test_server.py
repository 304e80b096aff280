"""Over real HTTP: what a ChaosServer on 127.0.0.1 receives verifies with the secret, a retried
request carries two different valid signatures, and the stage is found by its entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from importlib.metadata import entry_points

import pytest
from httprail import AsyncClient, Failure, MiddlewarePlugin, Success
from httprail.middleware import Retry
from httprail.testing import ChaosServer, FakeClock, Reply

from httprail_signing import HmacSigning, SigningError, verify

SECRET = "s3cret-key"


@pytest.fixture
def signing_server() -> Iterator[ChaosServer]:
    """A ChaosServer of our own, so the tests need no fixture from httprail's repository."""
    with ChaosServer() as server:
        yield server


def test_the_entry_point_is_declared_by_this_distribution_and_loads_the_stage() -> None:
    (found,) = entry_points(group="httprail.plugins", name="hmac-signing")
    assert found.value == "httprail_signing:HmacSigning"
    assert found.dist is not None
    assert found.dist.name == "httprail-signing"
    assert found.load() is HmacSigning


async def test_a_stage_found_only_through_its_entry_point_signs_real_requests(
    signing_server: ChaosServer,
) -> None:
    """What a third party's middleware needs: an entry point, nothing registered in httprail."""
    (found,) = entry_points(group="httprail.plugins", name="hmac-signing")
    stage = found.load()("client-1", SECRET)
    assert isinstance(stage, MiddlewarePlugin)
    async with AsyncClient(signing_server.url, plugins=[stage]) as client:
        outcome = await client.post(
            "/v1/items", params={"b": "2", "a": "1 2"}, json={"name": "widget"}
        )
    assert isinstance(outcome, Success)
    (received,) = signing_server.requests_for("/v1/items")
    assert received.query == "b=2&a=1+2"
    assert received.body == b'{"name":"widget"}'
    assert received.header("x-signature-timestamp") is not None
    assert verify(received, SECRET, max_age=60, key_id="client-1")
    assert not verify(received, "wrong-secret", max_age=60)


async def test_extra_signed_headers_and_sha512_verify_on_the_server(
    signing_server: ChaosServer,
) -> None:
    names = ("host", "content-type", "x-tenant")
    stage = HmacSigning(
        "client-1", SECRET, header="X-Sig", algorithm="sha512", signed_headers=names
    )
    async with AsyncClient(signing_server.url, plugins=[stage]) as client:
        outcome = await client.put(
            "/p%20q/r", content=b"\x00\xffbinary", headers={"Content-Type": "a/b", "X-Tenant": "t"}
        )
    assert isinstance(outcome, Success)
    (received,) = signing_server.requests
    assert received.path == "/p%20q/r"
    assert verify(received, SECRET, 60, header="X-Sig", algorithm="sha512", signed_headers=names)
    assert not verify(received, SECRET, 60, header="X-Sig", signed_headers=names)


async def test_a_retried_request_carries_two_different_valid_signatures(
    signing_server: ChaosServer,
) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    signing_server.script("/retried", Reply.status(503, retry_after="2"), Reply.json({"ok": 1}))
    stack: list[MiddlewarePlugin] = [
        Retry(clock=clock, sleep=clock.sleep),
        HmacSigning("client-1", SECRET, clock=clock),
    ]
    async with AsyncClient(signing_server.url, plugins=stack) as client:
        outcome = await client.put("/retried", json={"n": 1})
    assert isinstance(outcome, Success)
    first, second = signing_server.requests_for("/retried")
    assert first.header("x-signature-timestamp") == "1700000000"
    assert second.header("x-signature-timestamp") == "1700000002"
    assert first.header("signature") != second.header("signature")
    assert clock.sleeps == [2.0]
    assert verify(first, SECRET, 300, clock=clock)
    assert verify(second, SECRET, 300, clock=clock)


async def test_a_streamed_upload_is_refused_before_anything_is_sent(
    signing_server: ChaosServer,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"part"

    async with AsyncClient(signing_server.url, plugins=[HmacSigning("k1", SECRET)]) as client:
        outcome = await client.post("/upload", content=chunks())
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), SigningError)
    assert signing_server.count() == 0
