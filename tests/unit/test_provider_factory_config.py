"""ProviderFactory.from_config: one key per declared provider, built through its whole stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from httprail import (
    AsyncClient,
    ConfigError,
    Failure,
    Outcome,
    PluginRegistry,
    ProviderNotFoundError,
    build_stack,
)
from httprail.generators import ProviderFactory, StackGenerator
from httprail.testing import MockTerminal


class Echo:
    """A test generator: one POST through the stack; counts how many were built."""

    name = "echo"
    built: ClassVar[int] = 0

    def __init__(self, client: AsyncClient, *, model: str, temperature: float = 1.0) -> None:
        type(self).built += 1
        self.client = client
        self.model = model
        self.temperature = temperature
        self.closed = False

    async def generate(self, request: object) -> Outcome:
        return await self.client.post("/chat", json={"model": self.model})

    async def generate_stream(self, request: object) -> AsyncIterator[Outcome]:
        yield await self.generate(request)

    async def aclose(self) -> None:
        self.closed = True


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "url": str(request.url),
            "auth": request.headers.get("authorization"),
            "body": request.content.decode(),
        },
    )


def registry() -> PluginRegistry:
    found = PluginRegistry.discover(environ={})
    found.register("generators", "echo", Echo, replace=True)
    found.register("transports", "mock", lambda: MockTerminal(_answer), replace=True)
    return found


DECLARATION: dict[str, Any] = {
    "providers": {
        "acme": {
            "base_url": "https://llm.acme.test/v1",
            "api_key_env": "ACME_KEY",
            "stack": ["logging", "retry", "circuit_breaker", "auth", "echo"],
            "terminal": "mock",
            "options": {"echo": {"model": "acme-large"}},
        },
        "local": {
            "base_url": "http://127.0.0.1:9/v1",
            "stack": ["retry", "echo"],
            "terminal": "mock",
            "options": {"echo": {"model": "tiny"}},
        },
    },
    "services": {"billing": {"base_url": "http://billing.internal", "terminal": "mock"}},
}
ENV = {"ACME_KEY": "sk-acme-1234"}


def factory(source: Any = None, **kwargs: Any) -> ProviderFactory:
    return ProviderFactory.from_config(
        DECLARATION if source is None else source, registry=registry(), environ=ENV, **kwargs
    )


async def test_every_declared_provider_is_a_key_and_services_are_not() -> None:
    async with factory() as providers:
        assert providers.keys() == ("acme", "local")
        assert "billing" not in providers
        generator = (await providers.get("acme")).unwrap()
        assert isinstance(generator, StackGenerator)
        assert generator.name == "echo"
        assert [p.name for p in generator.stack.pipeline.plugins] == [
            "logging",
            "retry",
            "circuit_breaker",
            "auth",
        ]
        body = (await generator.generate(None)).unwrap().json()
        assert body["url"] == "https://llm.acme.test/v1/chat"
        assert body["auth"] == "Bearer sk-acme-1234"
        assert '"model":"acme-large"' in body["body"]


async def test_overrides_become_generator_options_and_are_cached_per_value() -> None:
    async with factory() as providers:
        small = (await providers.get("acme", model="acme-small")).unwrap()
        again = (await providers.get("acme", model="acme-small")).unwrap()
        default = (await providers.get("acme")).unwrap()
        assert small is again
        assert small is not default
        body = (await small.generate(None)).unwrap().json()
        assert '"model":"acme-small"' in body["body"]


async def test_a_mistyped_override_is_a_config_error_naming_it() -> None:
    async with factory() as providers:
        unknown = await providers.get("acme", modle="x")
        wrong_type = await providers.get("acme", temperature="hot")
    assert isinstance(unknown, Failure)
    assert isinstance(unknown.failure(), ConfigError)
    assert "'modle'" in str(unknown.failure())
    assert "provider 'acme'" in str(unknown.failure())
    assert isinstance(wrong_type, Failure)
    assert "'temperature'" in str(wrong_type.failure())


async def test_an_unknown_key_lists_the_known_ones() -> None:
    async with factory() as providers:
        outcome = await providers.get("acmee")
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, ProviderNotFoundError)
    assert error.known == ("acme", "local")
    assert str(error) == "no provider 'acmee'; known: acme, local"


async def test_concurrent_gets_build_each_provider_once() -> None:
    async with factory() as providers:
        before = Echo.built
        results = await asyncio.gather(*(providers.get("local") for _ in range(50)))
        assert Echo.built - before == 1
        assert len({id(result.unwrap()) for result in results}) == 1


async def test_closing_the_factory_closes_generators_and_pools() -> None:
    providers = factory()
    generator = (await providers.get("local")).unwrap()
    assert isinstance(generator, StackGenerator)
    inner = generator.stack.generator
    await generator.generate(None)
    await providers.aclose()
    assert inner.closed
    assert generator.stack.pipeline.terminal.closed  # the MockTerminal: the pool is closed


def test_declaration_mistakes_are_raised_when_the_factory_is_built() -> None:
    broken = {
        "providers": {
            "acme": {
                "base_url": "https://x.test",
                "stack": ["retyr", "echo"],
                "options": {"echo": {"model": "m"}},
            }
        }
    }
    with pytest.raises(ConfigError, match=r"provider 'acme': unknown plugin 'retyr'"):
        factory(broken)
    with pytest.raises(ConfigError, match="ACME_KEY"):
        ProviderFactory.from_config(DECLARATION, registry=registry(), environ={})


async def test_a_stack_file_declares_the_factory(tmp_path: Path) -> None:
    path = tmp_path / "httprail.toml"
    path.write_text(
        "[providers.local]\n"
        'base_url = "http://127.0.0.1:9/v1"\n'
        'stack = ["retry", "echo"]\n'
        'terminal = "mock"\n'
        "[providers.local.options.echo]\n"
        'model = "from-file"\n',
        encoding="utf-8",
    )
    async with factory(path) as providers:
        generator = (await providers.get("local")).unwrap()
        body = (await generator.generate(None)).unwrap().json()
    assert '"model":"from-file"' in body["body"]


async def test_providers_can_still_be_registered_at_runtime() -> None:
    async with factory() as providers:
        acme = (await providers.get("acme")).unwrap()
        providers.register("alias", lambda **_: acme)
        assert providers.keys() == ("acme", "alias", "local")
        assert (await providers.get("alias")).unwrap() is acme
        with pytest.raises(ConfigError, match="already registered"):
            providers.register("acme", lambda **_: acme)


def test_overrides_for_a_service_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"service 'billing': overrides 'model' given"):
        build_stack(
            DECLARATION, "billing", registry=registry(), environ=ENV, overrides={"model": "x"}
        )


def test_a_stack_generator_needs_a_generator() -> None:
    stack = build_stack(DECLARATION, "billing", registry=registry(), environ=ENV)
    with pytest.raises(ConfigError, match="is not a Generator"):
        StackGenerator(stack)


async def test_a_stack_generator_forwards_streams_and_names_its_provider() -> None:
    async with factory() as providers:
        generator = (await providers.get("local")).unwrap()
        items = [item async for item in generator.generate_stream(None)]
    assert repr(generator) == "StackGenerator('local', generator='echo')"
    assert len(items) == 1
    assert items[0].unwrap().json()["url"] == "http://127.0.0.1:9/v1/chat"
