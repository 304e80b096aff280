"""A registry against real servers: requests reach the endpoints with the right path, Host and
credentials; health checks mark a failing endpoint unhealthy and skip it; nothing is left
running after close."""

from __future__ import annotations

import asyncio

from returns.result import Success

from httprail.services import ServiceRegistry
from httprail.testing import ChaosServer, Reply


async def test_requests_reach_every_endpoint_with_path_host_and_credentials() -> None:
    with ChaosServer() as one, ChaosServer() as two:
        for server in (one, two):
            server.script("/api/users/1", Reply.json({"id": 1}))
        env = {
            "HTTP_SERVICES__USER__BASE_URL": "http://user.internal/api",
            "HTTP_SERVICES__USER__ENDPOINTS": f"{one.url},{two.url}",
            "HTTP_SERVICES__USER__API_KEY_ENV": "USER_TOKEN",
            "HTTP_SERVICES__USER__STACK": "retry,auth",
            "USER_TOKEN": "s3cret-token",
        }
        async with ServiceRegistry.from_env(env) as registry:
            client = registry.client("user").unwrap()
            outcomes = [await client.get("/users/1", params={"v": "2"}) for _ in range(4)]
        assert all(type(o) is Success for o in outcomes)
        for server in (one, two):
            seen = server.requests_for("/api/users/1")
            assert len(seen) == 2
            assert seen[0].query == "v=2"
            assert seen[0].header("host") == f"127.0.0.1:{server.port}"
            assert seen[0].header("authorization") == "Bearer s3cret-token"


async def test_health_checks_take_a_failing_endpoint_out_and_stop_on_close() -> None:
    with ChaosServer() as good, ChaosServer() as sick:
        good.script("/health", Reply.json({"ok": True}))
        good.script("/work", Reply.json({"ok": True}))
        sick.script("/health", Reply.status(503))
        sick.script("/work", Reply.json({"ok": True}))
        env = {
            "HTTP_SERVICES__WORK__ENDPOINTS": f"{good.url},{sick.url}",
            "HTTP_SERVICES__WORK__HEALTH_URL": "/health",
            "HTTP_SERVICES__WORK__HEALTH_CHECK__INTERVAL": "0.05",
            "HTTP_SERVICES__WORK__HEALTH_CHECK__UNHEALTHY_THRESHOLD": "2",
        }
        before = asyncio.all_tasks()
        async with ServiceRegistry.from_env(env) as registry:
            for _ in range(100):
                health = await registry.health()
                if health.services["work"].status == "degraded":
                    break
                await asyncio.sleep(0.02)
            assert [e.state for e in health.services["work"].endpoints] == [
                "healthy",
                "unhealthy",
            ]
            client = registry.client("work").unwrap()
            for _ in range(6):
                assert type(await client.get("/work")) is Success
        assert asyncio.all_tasks() == before
        assert sick.count("/work") == 0
        probes = sick.count("/health")
        await asyncio.sleep(0.2)
        assert sick.count("/health") == probes  # no probe after close
