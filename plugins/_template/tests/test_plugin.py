"""HeaderInjector: what it adds, what it leaves alone, and that it reaches a real server."""

from __future__ import annotations

from importlib.metadata import entry_points

import httpx
import pytest
from httprail import (
    AsyncClient,
    ConfigError,
    ConnectError,
    Failure,
    MiddlewarePlugin,
    Pipeline,
    Success,
)
from httprail.testing import ChaosServer, MockTerminal

from httprail_plugin_template import HeaderInjector

URL = "https://api.test/items"


def ok() -> MockTerminal:
    return MockTerminal(lambda request: httpx.Response(200))


def test_it_is_a_middleware_plugin() -> None:
    plugin = HeaderInjector({"X-Team": "search"})
    assert isinstance(plugin, MiddlewarePlugin)
    assert plugin.name == "template-header"


def test_the_entry_point_is_declared() -> None:
    (found,) = entry_points(group="httprail.plugins", name="template-header")
    assert found.load() is HeaderInjector


async def test_headers_are_added_to_the_request() -> None:
    terminal = ok()
    pipeline = Pipeline([HeaderInjector({"X-Team": "search", "X-Env": "test"})], terminal)
    outcome = await pipeline.send(httpx.Request("GET", URL))
    assert isinstance(outcome, Success)
    (sent,) = terminal.requests
    assert sent.headers["x-team"] == "search"
    assert sent.headers["x-env"] == "test"


async def test_a_header_the_request_already_has_is_kept_unless_overwrite() -> None:
    keep, replace = ok(), ok()
    await Pipeline([HeaderInjector({"X-Team": "search"})], keep).send(
        httpx.Request("GET", URL, headers={"X-Team": "billing"})
    )
    await Pipeline([HeaderInjector({"X-Team": "search"}, overwrite=True)], replace).send(
        httpx.Request("GET", URL, headers={"X-Team": "billing"})
    )
    assert keep.requests[0].headers["x-team"] == "billing"
    assert replace.requests[0].headers["x-team"] == "search"


async def test_a_failure_from_further_down_passes_through_untouched() -> None:
    error = ConnectError("refused")
    pipeline = Pipeline([HeaderInjector({"X-Team": "search"})], MockTerminal(lambda r: error))
    outcome = await pipeline.send(httpx.Request("GET", URL))
    assert outcome == Failure(error)


@pytest.mark.parametrize(
    "headers",
    [{"": "v"}, {"Bad Name": "v"}, {"X-Ok": "line\r\nX-Injected: 1"}, {"X-Ok": 1}],
)
def test_invalid_headers_are_a_config_error(headers: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        HeaderInjector(headers)  # type: ignore[arg-type]


def test_repr_shows_names_not_values() -> None:
    assert "s3cret" not in repr(HeaderInjector({"X-Api-Key": "s3cret"}))


async def test_the_header_reaches_a_real_server(chaos_server: ChaosServer) -> None:
    plugins = [HeaderInjector({"X-Team": "search"})]
    async with AsyncClient(chaos_server.url, plugins=plugins) as client:
        outcome = await client.get("/items")
    assert isinstance(outcome, Success)
    assert chaos_server.requests_for("/items")[0].header("X-Team") == "search"
