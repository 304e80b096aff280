"""Outlier ejection against real servers: with one of three endpoints failing every request,
>= 99% of logical requests succeed and the bad endpoint gets <= 5% of the attempts after the
first second (default stack, default balancer: the issue's targets, on a 3 s run)."""

from __future__ import annotations

import asyncio
import time

import pytest
from returns.result import Success

from httprail.services import ServiceConfig, ServiceRegistry
from httprail.testing import ChaosServer, Reply

from .._net import closed_port


@pytest.mark.parametrize("fault", ["503", "refused"])
async def test_one_failing_endpoint_of_three_costs_under_one_percent(fault: str) -> None:
    with ChaosServer() as one, ChaosServer() as two, ChaosServer() as bad:
        for server in (one, two):
            server.script("/work", Reply.json({"ok": True}))
        bad.script("/work", Reply.status(503))
        bad_url = bad.url if fault == "503" else f"http://127.0.0.1:{closed_port()}"
        config = ServiceConfig(endpoints=(one.url, two.url, bad_url))
        async with ServiceRegistry({"svc": config}) as registry:
            client = registry.client("svc").unwrap()
            endpoints = registry.balancer("svc").unwrap().endpoints
            results: list[bool] = []
            end = time.monotonic() + 3.0

            async def worker() -> None:
                while time.monotonic() < end:
                    results.append(type(await client.get("/work")) is Success)

            async def after_first_second() -> list[int]:
                await asyncio.sleep(1.0)
                return [e.attempts for e in endpoints]

            marks = asyncio.create_task(after_first_second())
            await asyncio.gather(*(worker() for _ in range(4)))
            early = await marks
            late = [e.attempts - before for e, before in zip(endpoints, early, strict=True)]
        health = await registry.health()
    assert len(results) > 200
    assert sum(results) / len(results) >= 0.99
    assert late[2] / sum(late) <= 0.05
    assert endpoints[2].times_ejected == 1
    assert health.services["svc"].endpoints[2].state == "ejected"
    assert health.services["svc"].status == "degraded"
    if fault == "503":
        assert bad.count("/work") == endpoints[2].attempts
