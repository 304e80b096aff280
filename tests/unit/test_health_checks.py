"""Active health checks: probes mark endpoints unhealthy and healthy again by thresholds, never
raise out of their task, and stop with the registry leaving no task behind."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from httprail import ConnectError
from httprail.services import Balancer, HealthCheck, HealthChecker, ServiceRegistry
from httprail.services._checks import health_url_of
from httprail.testing import FakeClock, MockTerminal

BASE = httpx.URL("http://user.internal/api")
ENDPOINTS = [httpx.URL("http://10.0.0.1:81"), httpx.URL("http://10.0.0.2:82")]


def checker(terminal: MockTerminal, **options: float) -> tuple[HealthChecker, Balancer, FakeClock]:
    clock = FakeClock()
    balancer = Balancer(BASE, ENDPOINTS, service="user", clock=clock)
    url = health_url_of(BASE, "/health", "health_url")
    check = HealthChecker(
        balancer,
        url,
        terminal,
        HealthCheck.model_validate(options),
        sleep=clock.sleep,
        wall=lambda: 0.0,
    )
    return check, balancer, clock


async def test_failing_probes_mark_an_endpoint_unhealthy_then_passing_ones_bring_it_back() -> None:
    down = {"10.0.0.1"}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503 if request.url.host in down else 200)

    check, balancer, _ = checker(MockTerminal(answer), unhealthy_threshold=2, healthy_threshold=3)
    first, second = balancer.endpoints
    await check.check_once()
    assert balancer.state(first) == "healthy"  # one failure is not enough
    await check.check_once()
    assert [balancer.state(e) for e in balancer.endpoints] == ["unhealthy", "healthy"]
    assert first.last_check == "1970-01-01T00:00:00+00:00"
    down.clear()
    for _ in range(2):
        await check.check_once()
    assert balancer.state(first) == "unhealthy"  # two passes of three
    await check.check_once()
    assert balancer.state(first) == "healthy"
    assert balancer.state(second) == "healthy"


async def test_a_probe_goes_to_the_health_url_on_each_endpoint_without_the_base_path() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(200))
    check, _, _ = checker(terminal)
    await check.check_once()
    assert sorted(str(r.url) for r in terminal.requests) == [
        "http://10.0.0.1:81/health",
        "http://10.0.0.2:82/health",
    ]
    assert terminal.requests[0].extensions["timeout"]["read"] == 2.0


@pytest.mark.parametrize("failure", ["raises", "error", "hangs"])
async def test_a_failing_probe_counts_as_a_failure_and_never_raises(failure: str) -> None:
    async def answer(request: httpx.Request) -> httpx.Response | ConnectError:
        if failure == "raises":
            raise OSError("terminal broke its contract")
        if failure == "hangs":
            await asyncio.sleep(10)
        return ConnectError("refused", request=request)

    check, balancer, _ = checker(MockTerminal(answer), unhealthy_threshold=1, timeout=0.01)
    await check.check_once()
    assert {balancer.state(e) for e in balancer.endpoints} == {"unhealthy"}


async def test_run_probes_then_waits_the_interval_until_cancelled() -> None:
    terminal = MockTerminal(lambda request: httpx.Response(200))
    check, _, clock = checker(terminal, interval=7)
    waits: list[float] = []
    third = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            third.set()
            await asyncio.Event().wait()  # never set: the task waits here until cancelled

    check._sleep = sleep
    task = asyncio.create_task(check.run())
    await third.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert waits == [7, 7, 7]
    assert check.rounds == 3
    assert "every 7.0 s" in repr(check)
    assert clock.sleeps == []  # the injected sleep was used


async def test_the_registry_runs_checks_feeding_health_and_leaves_no_task_after_close() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503 if request.url.host == "10.0.0.1" else 200)

    env = {
        "HTTP_SERVICES__USER__BASE_URL": "http://user.internal",
        "HTTP_SERVICES__USER__ENDPOINTS": "http://10.0.0.1:81,http://10.0.0.2:82",
        "HTTP_SERVICES__USER__HEALTH_URL": "/health",
        "HTTP_SERVICES__USER__HEALTH_CHECK__UNHEALTHY_THRESHOLD": "1",
        "HTTP_SERVICES__PLAIN__BASE_URL": "http://plain.internal",
    }
    gate = asyncio.Event()

    async def sleep(_seconds: float) -> None:
        await gate.wait()

    before = asyncio.all_tasks()
    registry = ServiceRegistry.from_env(
        env, terminal=lambda name: MockTerminal(answer), sleep=sleep
    )
    async with registry:
        await registry.start()  # a second start starts nothing more
        assert len(registry._tasks) == 1
        for _ in range(5):
            await asyncio.sleep(0)
        health = await registry.health()
        user = health.services["user"]
        assert user.status == "degraded"
        assert [e.state for e in user.endpoints] == ["unhealthy", "healthy"]
        assert health.services["plain"].status == "ready"
        assert health.status == "degraded"
    assert asyncio.all_tasks() == before


async def test_a_service_with_every_endpoint_unhealthy_is_down() -> None:
    env = {
        "HTTP_SERVICES__USER__BASE_URL": "http://user.internal",
        "HTTP_SERVICES__USER__HEALTH_URL": "/health",
        "HTTP_SERVICES__USER__HEALTH_CHECK__UNHEALTHY_THRESHOLD": "1",
    }
    registry = ServiceRegistry.from_env(
        env, terminal=lambda name: MockTerminal(lambda request: httpx.Response(500))
    )
    checker_ = registry._services["user"].checker
    assert checker_ is not None
    await checker_.check_once()
    health = await registry.health()
    assert health.services["user"].status == "down"
    assert health.status == "down"
    await registry.aclose()
