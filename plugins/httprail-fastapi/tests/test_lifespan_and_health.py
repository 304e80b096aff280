"""The lifespan opens and closes clients and the registry; dependencies hand them out; the
health router reports liveness and readiness from breaker state (TestClient, no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from httprail import AsyncClient, ConfigError, Failure, RequestError, Result, Success
from httprail.middleware import CircuitBreaker
from httprail.testing import MockTerminal

from httprail_fastapi import (
    HttprailState,
    client_dep,
    health_report,
    health_router,
    httprail_lifespan,
    registry_dep,
    respond,
    service_dep,
)


def mock_client(status: int = 200, *, breaker: bool = False) -> tuple[AsyncClient, MockTerminal]:
    terminal = MockTerminal(lambda request: httpx.Response(status, json={"path": request.url.path}))
    plugins = [CircuitBreaker(failure_threshold=1, cooldown=60)] if breaker else []
    return AsyncClient("http://svc.test", plugins=plugins, terminal=terminal), terminal


@dataclass
class Service:
    """A stand-in for ServiceHealth."""

    status: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "endpoints": []}


@dataclass
class Health:
    services: Mapping[str, Service]


@dataclass
class FakeRegistry:
    """The registry protocol: clients by name, health, start and close recorded."""

    clients: dict[str, AsyncClient]
    statuses: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def names(self) -> tuple[str, ...]:
        return tuple(self.clients)

    def client(self, name: str) -> Result[AsyncClient, RequestError]:
        if name in self.clients:
            return Success(self.clients[name])
        return Failure(RequestError(f"no service {name!r}; known: {', '.join(self.clients)}"))

    async def health(self) -> Health:
        return Health({name: Service(status) for name, status in self.statuses.items()})

    async def start(self) -> None:
        self.calls.append("start")

    async def aclose(self) -> None:
        self.calls.append("aclose")


class Greeter:
    """A typed service: anything built from one AsyncClient."""

    built = 0

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        Greeter.built += 1

    async def hello(self) -> Result[httpx.Response, RequestError]:
        return await self.client.get("/hello")


def test_clients_are_opened_for_the_app_and_closed_with_it() -> None:
    """Factories run at startup, the clients serve requests, and shutdown closes them."""
    client, terminal = mock_client()
    app = FastAPI(lifespan=httprail_lifespan(clients={"user": lambda: client}))

    @app.get("/user")
    async def user(http: Annotated[AsyncClient, Depends(client_dep("user"))]) -> Any:
        return respond(await http.get("/users/1"))

    with TestClient(app) as http:
        assert http.get("/user").json() == {"path": "/users/1"}
        assert not terminal.closed
    assert terminal.closed


def test_factories_build_fresh_clients_on_each_start() -> None:
    """An app started twice (one TestClient per test) gets a new client each time."""
    built: list[MockTerminal] = []

    def make() -> AsyncClient:
        client, terminal = mock_client()
        built.append(terminal)
        return client

    app = FastAPI(lifespan=httprail_lifespan(clients={"user": make}))
    for _ in range(2):
        with TestClient(app):
            pass
    assert len(built) == 2
    assert all(terminal.closed for terminal in built)


def test_the_registry_is_started_then_closed_and_serves_clients_by_name() -> None:
    """registry.start() runs at startup and aclose() at shutdown; client_dep finds its
    clients, service_dep builds the typed service once per app."""
    client, _ = mock_client()
    registry = FakeRegistry({"greeter": client})
    app = FastAPI(lifespan=httprail_lifespan(registry=registry))
    Greeter.built = 0

    @app.get("/hello")
    async def hello(greeter: Annotated[Greeter, Depends(service_dep(Greeter, "greeter"))]) -> Any:
        return respond(await greeter.hello())

    @app.get("/names")
    async def names(found: Annotated[Any, Depends(registry_dep())]) -> Any:
        return found.names()

    with TestClient(app) as http:
        assert registry.calls == ["start"]
        assert http.get("/hello").json() == {"path": "/hello"}
        assert http.get("/hello").status_code == 200
        assert http.get("/names").json() == ["greeter"]
    assert Greeter.built == 1
    assert registry.calls == ["start", "aclose"]


def test_an_unknown_client_name_is_a_500_listing_the_known_names() -> None:
    """A dependency on a name nobody configured answers 500 with the names there are."""
    client, _ = mock_client()
    app = FastAPI(lifespan=httprail_lifespan(clients={"user": client}))

    @app.get("/x")
    async def route(http: Annotated[AsyncClient, Depends(client_dep("billing"))]) -> None:
        raise AssertionError("not reached")

    @app.get("/registry")
    async def no_registry(found: Annotated[Any, Depends(registry_dep())]) -> None:
        raise AssertionError("not reached")

    with TestClient(app) as http:
        answer = http.get("/x")
        assert answer.status_code == 500
        assert answer.json()["detail"] == {
            "error": "RequestError",
            "message": "no client or service 'billing'; known: user",
        }
        assert http.get("/registry").status_code == 500


def test_a_dependency_without_the_lifespan_is_a_config_error_naming_the_fix() -> None:
    """Using client_dep in an app created without httprail_lifespan raises ConfigError."""
    app = FastAPI()

    @app.get("/x")
    async def route(http: Annotated[AsyncClient, Depends(client_dep("user"))]) -> None:
        raise AssertionError("not reached")

    with TestClient(app) as http, pytest.raises(ConfigError, match="httprail_lifespan"):
        http.get("/x")


def test_the_apps_own_lifespan_runs_inside_with_the_clients_open() -> None:
    """A composed lifespan sees the clients open, and the state it yields reaches requests."""
    client, terminal = mock_client()
    seen: list[bool] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        seen.append(not terminal.closed and app.state.httprail.clients["user"] is client)
        yield {"greeting": "hi"}
        seen.append(not terminal.closed)

    app = FastAPI(lifespan=httprail_lifespan(clients={"user": client}, lifespan=own))

    @app.get("/greeting")
    async def greeting(request: Request) -> str:
        return str(request.state.greeting)

    with TestClient(app) as http:
        assert http.get("/greeting").json() == "hi"
    assert seen == [True, True]
    assert terminal.closed


def health_app(required: tuple[str, ...] = (), **statuses: str) -> tuple[FastAPI, AsyncClient]:
    """An app with a healthy client "good", a failing client "flaky" behind a one-failure
    breaker, and a registry whose services report ``statuses``."""
    good, _ = mock_client()
    flaky, _ = mock_client(503, breaker=True)
    registry = FakeRegistry({}, statuses=dict(statuses))
    app = FastAPI(
        lifespan=httprail_lifespan(registry=registry, clients={"good": good, "flaky": flaky})
    )
    app.include_router(health_router(required=required))
    return app, flaky


def test_liveness_is_200_whatever_the_upstreams() -> None:
    """/health/live answers 200 even with every service down."""
    app, _ = health_app(catalog="down")
    with TestClient(app) as http:
        assert http.get("/health/live").json() == {"status": "alive"}


def test_readiness_reports_an_open_breaker_as_degraded_and_stays_ready() -> None:
    """When one client's breaker opens, it reads "degraded", the others "ready", and the
    app is still ready (200): failing readiness would take every instance out of rotation."""
    app, flaky = health_app(catalog="ready")
    with TestClient(app) as http:
        assert http.get("/health/ready").json()["status"] == "ready"
        http.portal.call(flaky.get, "/boom")  # type: ignore[union-attr]  # opens the breaker
        answer = http.get("/health")
    assert answer.status_code == 200
    report = answer.json()
    assert report["status"] == "degraded"
    assert report["ready"] is True
    assert report["services"]["catalog"]["status"] == "ready"
    assert report["clients"]["good"]["status"] == "ready"
    assert report["clients"]["flaky"]["status"] == "down"
    (upstream,) = report["clients"]["flaky"]["upstreams"].values()
    assert upstream["breaker"] == "open"
    assert 0 < upstream["retry_in"] <= 60


def test_readiness_is_503_when_a_required_service_is_down() -> None:
    """A service named in required= that is down (or unknown) makes readiness 503."""
    app, _ = health_app(("catalog", "missing"), catalog="down")
    with TestClient(app) as http:
        answer = http.get("/health/ready")
    assert answer.status_code == 503
    assert answer.json()["required_down"] == ["catalog", "missing"]


@pytest.mark.parametrize("required", ["catalog", b"catalog", 5, [1], None])
async def test_required_must_be_a_collection_of_names(required: Any) -> None:
    """One string would be read as the names of its letters (readiness down for good): it is
    a ConfigError naming the argument, as is anything else that is not names."""
    with pytest.raises(ConfigError, match=r"health_router\(required=...\)"):
        health_router(required=required)
    state = HttprailState(registry=None, clients={})
    with pytest.raises(ConfigError, match=r"health_report\(required=...\)"):
        await health_report(state, required=required)


def test_readiness_is_503_when_everything_is_down() -> None:
    """With every service and client down, the overall status is "down" and the answer 503."""
    flaky, _ = mock_client(503, breaker=True)
    registry = FakeRegistry({}, statuses={"catalog": "down"})
    app = FastAPI(lifespan=httprail_lifespan(registry=registry, clients={"flaky": flaky}))
    app.include_router(health_router(prefix="/status"))
    with TestClient(app) as http:
        http.portal.call(flaky.get, "/boom")  # type: ignore[union-attr]
        answer = http.get("/status")
    assert answer.status_code == 503
    assert answer.json()["status"] == "down"
