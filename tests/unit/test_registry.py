"""ServiceRegistry: services from the environment, the legacy convention and a stack file; one
client per service; unknown names are Failures; bad values are one-line ConfigErrors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from returns.result import Failure, Success

from httprail import ConfigError, HttpSettings, ServiceNotFoundError
from httprail.services import ServiceClient, ServiceConfig, ServiceRegistry
from httprail.testing import MockTerminal

ENV = {"HTTP_SERVICES__USER__BASE_URL": "http://user.internal/api"}


def ok_terminal(_name: str) -> MockTerminal:
    return MockTerminal(lambda request: httpx.Response(200, json={"url": str(request.url)}))


def registry(environ: Mapping[str, str], **options: Any) -> ServiceRegistry:
    return ServiceRegistry.from_env(environ, terminal=ok_terminal, **options)


async def test_a_service_from_the_environment_gets_a_client_on_its_base_url() -> None:
    async with registry(ENV) as services:
        assert services.names() == ("user",)
        client = services.client("user").unwrap()
        response = (await client.get("/users/1")).unwrap()
        assert response.json() == {"url": "http://user.internal/api/users/1"}
        assert services.client("USER").unwrap() is client


async def test_an_unknown_service_is_a_failure_listing_the_known_names() -> None:
    async with registry({**ENV, "HTTP_SERVICES__BILLING__BASE_URL": "http://billing"}) as r:
        outcome = r.client("orders")
        assert isinstance(outcome, Failure)
        error = outcome.failure()
        assert isinstance(error, ServiceNotFoundError)
        assert str(error) == "no service 'orders'; known: billing, user"
        assert error.counts_against_upstream is False
        assert isinstance(r.config("orders"), Failure)
        assert isinstance(r.balancer("orders"), Failure)


async def test_per_service_settings_override_the_global_ones() -> None:
    env = {**ENV, "HTTP_SERVICES__USER__TIMEOUT_READ": "4", "HTTP_SERVICES__USER__MAX_RETRIES": "1"}
    async with registry(env, settings=HttpSettings(timeout_read=30)) as services:
        client = services.client("user").unwrap()
        assert client.settings.timeout_read == 4
        assert client.settings.max_retries == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (  # one string was read as the names of its letters
            lambda: ServiceRegistry.from_env({"U_SERVICE_HOST": "h"}, legacy="u"),
            r"from_env\(legacy=...\) must be a collection of service names, got 'u'",
        ),
        (
            lambda: ServiceRegistry.from_env({}, legacy=(5,)),
            r"from_env\(legacy=...\) must be a collection of service names",
        ),
        (
            lambda: ServiceRegistry.from_env({"HTTP_SERVICES__U__BASE_URL": 5}),
            r"from_env\(environ=...\) must be text values \(HTTP_SERVICES__U__BASE_URL is not\)",
        ),
        (lambda: ServiceRegistry.from_env(["x"]), r"from_env\(environ=...\) must be a mapping"),
    ],
)
def test_from_env_refuses_arguments_it_cannot_read(call: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HTTP_SERVICES__USER__BASE_URL": "ftp://x"},
            "HTTP_SERVICES__USER__BASE_URL: must be absolute: http:// or https:// and a host "
            "(got 'ftp://x')",
        ),
        (
            {**ENV, "HTTP_SERVICES__USER__ENDPOINTS": "http://a:1,nope"},
            "HTTP_SERVICES__USER__ENDPOINTS: must be absolute",
        ),
        ({**ENV, "HTTP_SERVICES__USER__ENDPOINTS": " , "}, "HTTP_SERVICES__USER__ENDPOINTS: empty"),
        (  # found at start-up, not by every request (it was "port 99999 is out of range")
            {"HTTP_SERVICES__USER__BASE_URL": "http://h:99999"},
            "HTTP_SERVICES__USER__BASE_URL: has port 99999: a port is 1 to 65535",
        ),
        (
            {**ENV, "HTTP_SERVICES__USER__ENDPOINTS": "http://a:1,http://h h/"},
            "HTTP_SERVICES__USER__ENDPOINTS: has a host name that cannot be looked up",
        ),
        (
            {**ENV, "HTTP_SERVICES__USER__TIMOUT_READ": "3"},
            "HTTP_SERVICES__USER__TIMOUT_READ: unknown key",
        ),
        ({**ENV, "HTTP_SERVICES__USER__TIMEOUT_READ": "-3"}, "HTTP_SERVICES__USER__TIMEOUT_READ: "),
        (
            {**ENV, "HTTP_SERVICES__USER__HEALTH_CHECK__INTERVAL": "soon"},
            "HTTP_SERVICES__USER__HEALTH_CHECK__INTERVAL: Input should be a valid number",
        ),
        (
            {**ENV, "HTTP_SERVICES__USER__BALANCER__POLICY": "random"},
            "HTTP_SERVICES__USER__BALANCER__POLICY: Input should be 'round_robin' or",
        ),
        (
            {"HTTP_SERVICES__USER": "x"},
            "HTTP_SERVICES__USER: expected HTTP_SERVICES__<NAME>__<KEY>",
        ),
        (
            {"HTTP_SERVICES__USER__HEALTH_URL": "/health"},
            "HTTP_SERVICES__USER__BASE_URL: not set (service 'user' has no URL)",
        ),
        (
            {**ENV, "HTTP_SERVICES__USER__HEALTH_URL": "http://elsewhere/health"},
            "HTTP_SERVICES__USER__HEALTH_URL: must be a path (/health) or a URL on the service's",
        ),
        (
            {**ENV, "HTTP_SERVICES__USER__ENDPOINTS": "http://a:1?x=1"},
            "HTTP_SERVICES__USER__ENDPOINTS: must not have a query or fragment",
        ),
    ],
)
def test_a_bad_variable_is_a_one_line_config_error_naming_it(
    env: Mapping[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        registry(env)
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_credentials_in_an_endpoint_are_refused_and_never_quoted() -> None:
    env = {**ENV, "HTTP_SERVICES__USER__ENDPOINTS": "http://bob:hunter2@a:1"}
    with pytest.raises(ConfigError) as caught:
        registry(env)
    assert "must not hold credentials" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_services_variables_are_not_read_under_cgi() -> None:
    env = {**ENV, "REQUEST_METHOD": "GET"}
    assert registry(env).names() == ()


async def test_the_legacy_convention_gives_host_port_protocol_and_health_path() -> None:
    env = {
        "USER_SERVICE_HOST": "10.0.0.5,10.0.0.6",
        "USER_SERVICE_PORT": "8080",
        "USER_SERVICE_PROTOCOL": "HTTPS",
        "USER_SERVICE_HEALTH_PATH": "/healthz",
    }
    async with registry(env, legacy=("user",)) as services:
        config = services.config("user").unwrap()
        assert config.base == "https://10.0.0.5:8080"
        assert config.endpoints == ("https://10.0.0.5:8080", "https://10.0.0.6:8080")
        assert config.health_url == "/healthz"


async def test_the_services_variables_win_over_the_legacy_ones() -> None:
    env = {
        "USER_SERVICE_HOST": "10.0.0.5",
        "HTTP_SERVICES__USER__BASE_URL": "http://user.internal",
    }
    async with registry(env, legacy=("user",)) as services:
        assert services.config("user").unwrap().base == "http://user.internal"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "USER_SERVICE_HOST: not set"),
        ({"USER_SERVICE_HOST": "h", "USER_SERVICE_PORT": "99999"}, "USER_SERVICE_PORT: must be"),
        ({"USER_SERVICE_HOST": "h", "USER_SERVICE_PROTOCOL": "ftp"}, "USER_SERVICE_PROTOCOL:"),
        ({"USER_SERVICE_HOST": "h", "USER_SERVICE_HEALTH_PATH": "x"}, "USER_SERVICE_HEALTH_PATH:"),
        ({"USER_SERVICE_HOST": "h/p q"}, "USER_SERVICE_HOST:"),
    ],
)
def test_a_bad_legacy_variable_is_a_config_error_naming_it(
    env: Mapping[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        registry(env, legacy=("user",))


async def test_a_stack_file_declares_services_and_the_environment_wins_key_by_key(
    tmp_path: Path,
) -> None:
    file = tmp_path / "httprail.toml"
    file.write_text(
        "[services.billing]\n"
        'base_url = "http://billing.internal"\n'
        'endpoints = ["http://10.0.0.7:80", "http://10.0.0.8:80"]\n'
        'health_url = "/health"\n'
        "health_check = { interval = 3 }\n"
        'balancer = { policy = "least_request" }\n'
        "settings = { timeout_read = 7 }\n"
    )
    env = {
        "HTTP_SERVICES__BILLING__HEALTH_CHECK__TIMEOUT": "0.5",
        "HTTP_SERVICES__BILLING__TIMEOUT_CONNECT": "1",
    }
    async with registry(env, stack_file=file) as services:
        config = services.config("billing").unwrap()
        assert config.endpoints == ("http://10.0.0.7:80", "http://10.0.0.8:80")
        assert (config.health_check.interval, config.health_check.timeout) == (3, 0.5)
        assert config.balancer.policy == "least_request"
        client = services.client("billing").unwrap()
        assert (client.settings.timeout_read, client.settings.timeout_connect) == (7, 1)


def test_a_bad_key_in_a_stack_file_service_names_the_file_and_key(tmp_path: Path) -> None:
    file = tmp_path / "httprail.toml"
    file.write_text('[services.billing]\nbase_url = "http://b"\nhealth_check = { every = 3 }\n')
    with pytest.raises(ConfigError) as caught:
        registry({}, stack_file=file)
    assert str(caught.value).startswith(
        f"{file}: service 'billing', health_check.every: unknown key; known: interval"
    )


async def test_a_registry_built_by_hand_takes_service_configs() -> None:
    config = ServiceConfig(endpoints=("http://10.0.0.1:81", "http://10.0.0.2:82"))
    async with ServiceRegistry({"Orders": config}, terminal=ok_terminal) as services:
        assert services.names() == ("orders",)
        assert config.base == "http://10.0.0.1:81"
    with pytest.raises(ConfigError, match="needs a base_url or endpoints"):
        ServiceRegistry({"x": ServiceConfig()})
    with pytest.raises(ConfigError, match="declared twice"):
        ServiceRegistry({"x": config, "X": config}, terminal=ok_terminal)


async def test_closing_closes_every_client_and_starting_after_close_starts_nothing() -> None:
    terminals: list[MockTerminal] = []

    def make(name: str) -> MockTerminal:
        terminals.append(ok_terminal(name))
        return terminals[-1]

    env = {**ENV, "HTTP_SERVICES__USER__HEALTH_URL": "/health"}
    services = ServiceRegistry.from_env(env, terminal=make)
    await services.aclose()
    assert all(t.closed for t in terminals)
    await services.start()
    assert services._tasks == []


async def test_a_client_that_fails_to_close_is_reported_after_the_others_close() -> None:
    class Broken(MockTerminal):
        async def aclose(self) -> None:
            raise OSError("boom")

    def broken(_name: str) -> MockTerminal:
        return Broken(lambda request: httpx.Response(200))

    env = {**ENV, "HTTP_SERVICES__B__BASE_URL": "http://b"}
    with pytest.raises(OSError, match="boom"):
        await ServiceRegistry.from_env(ENV, terminal=broken).aclose()
    with pytest.raises(ExceptionGroup):
        await ServiceRegistry.from_env(env, terminal=broken).aclose()


async def test_health_reports_each_service_with_its_endpoints_and_upstreams() -> None:
    env = {**ENV, "HTTP_SERVICES__USER__ENDPOINTS": "http://a:1,http://b:2"}
    async with registry(env) as services:
        health = await services.health()
    user = health.services["user"]
    assert health.status == "ready"
    assert user.ready
    assert [e.url for e in user.endpoints] == ["http://a:1", "http://b:2"]
    data = health.to_dict()
    assert data["services"]["user"]["endpoints"][0] == {
        "url": "http://a:1",
        "state": "healthy",
        "ejected_for": None,
        "last_check": None,
    }
    assert data["services"]["user"]["upstreams"]["status"] == "ok"


def test_results_are_typed_for_match() -> None:
    outcome = registry(ENV).client("user")
    match outcome:
        case Success(client):
            assert client.settings is not None
        case Failure(_):  # pragma: no cover - the service exists
            raise AssertionError


async def test_typed_wraps_the_service_client_in_a_service_client_class() -> None:
    class Users(ServiceClient):
        pass

    async with registry(ENV) as services:
        users = services.typed("user", Users).unwrap()
        assert isinstance(users, Users)
        assert users.client is services.client("user").unwrap()
        missing = services.typed("orders", Users)
        assert isinstance(missing, Failure)
        assert isinstance(missing.failure(), ServiceNotFoundError)


def test_a_providers_base_url_variable_points_to_the_services_variable_unquoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROVIDERS__USER_SERVICE__BASE_URL", "http://bob:hunter2@user")
    with pytest.raises(ConfigError) as caught:
        HttpSettings()
    assert str(caught.value) == (
        "invalid settings: HTTP_PROVIDERS__USER_SERVICE__BASE_URL "
        "(providers.user_service.base_url): unknown setting; "
        "a service's URLs go in HTTP_SERVICES__USER_SERVICE__BASE_URL"
    )
