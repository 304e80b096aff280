"""ProviderFactory: keys refused or found with a typed answer; each generator built once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from httprail import (
    ConfigError,
    Failure,
    HttprailError,
    ProviderNotFoundError,
    RequestError,
    Result,
    Success,
    register_secret,
)
from httprail.generators import (
    GenerationRequest,
    GenerationResult,
    GenerationStream,
    Generator,
    ProviderFactory,
)


class FakeGenerator:
    """A generator that remembers how it was built and whether it was closed."""

    name = "fake"

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.closed = 0

    async def generate(self, request: GenerationRequest) -> Result[GenerationResult, RequestError]:
        return Success(GenerationResult(text="ok", model=str(self.options.get("model", "m"))))

    def generate_stream(
        self, request: GenerationRequest
    ) -> AsyncIterator[Result[str, RequestError]]:
        return GenerationStream(lambda: _nothing())

    async def aclose(self) -> None:
        self.closed += 1


async def _nothing() -> AsyncIterator[Result[str, RequestError]]:
    nothing: tuple[Result[str, RequestError], ...] = ()
    for item in nothing:
        yield item


class Counting:
    """A builder that counts its calls (sync)."""

    def __init__(self) -> None:
        self.calls = 0
        self.built: list[FakeGenerator] = []

    def __call__(self, **options: Any) -> FakeGenerator:
        self.calls += 1
        self.built.append(FakeGenerator(**options))
        return self.built[-1]


def built(outcome: Result[Generator, HttprailError]) -> FakeGenerator:
    generator = outcome.unwrap()
    assert isinstance(generator, FakeGenerator)
    return generator


# -- registering ------------------------------------------------------------------------------


async def test_get_builds_with_the_overrides_and_caches_per_overrides() -> None:
    factory = ProviderFactory()
    builder = Counting()
    factory.register("fake", builder)
    first = built(await factory.get("fake", model="a", temperature=0.5))
    again = built(await factory.get("fake", temperature=0.5, model="a"))
    other = built(await factory.get("fake", model="b"))
    assert first is again
    assert first.options == {"model": "a", "temperature": 0.5}
    assert other is not first
    assert other.options == {"model": "b"}
    assert builder.calls == 2


async def test_an_unknown_key_is_a_failure_listing_the_known_keys() -> None:
    factory = ProviderFactory()
    factory.register("openai-chat", FakeGenerator)
    factory.register("anthropic", FakeGenerator)
    outcome = await factory.get("openai")
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, ProviderNotFoundError)
    assert error.key == "openai"
    assert error.known == ("anthropic", "openai-chat")
    assert str(error) == "no provider 'openai'; known: anthropic, openai-chat"
    assert "ProviderNotFoundError" in repr(error)


async def test_an_empty_factory_says_it_knows_nothing() -> None:
    error = (await ProviderFactory().get("x")).failure()
    assert str(error) == "no provider 'x'; known: (none)"


async def test_a_non_string_key_is_not_found_rather_than_raising() -> None:
    factory = ProviderFactory()
    error = (await factory.get(["x"])).failure()  # type: ignore[arg-type]
    assert isinstance(error, ProviderNotFoundError)


async def test_an_override_named_key_reaches_the_builder() -> None:
    """``key`` is the provider's key only by position: an override called ``key`` (an API key
    option) goes to the builder (it raised TypeError: multiple values for 'key')."""
    factory = ProviderFactory()
    factory.register("fake", FakeGenerator)
    assert built(await factory.get("fake", key="k-1")).options == {"key": "k-1"}


async def test_a_builder_s_error_never_shows_a_known_secret() -> None:
    """A builder that raises with a key in its message: the ConfigError redacts it."""
    secret = "sk-builder-canary-0123456789"
    register_secret(secret)

    def refusing(**options: Any) -> FakeGenerator:
        raise RuntimeError(f"model list fetch refused key {secret}")

    factory = ProviderFactory()
    factory.register("p", refusing)
    error = (await factory.get("p")).failure()
    assert isinstance(error, ConfigError)
    assert "building provider 'p' failed" in str(error)
    assert secret not in str(error)
    assert secret not in repr(error)


def test_a_duplicate_key_is_refused_naming_it() -> None:
    factory = ProviderFactory()
    factory.register("fake", FakeGenerator)
    with pytest.raises(ConfigError, match=r"'fake' is already registered.*replace=True"):
        factory.register("fake", Counting())


async def test_replace_swaps_the_builder_and_drops_the_cached_generator() -> None:
    factory = ProviderFactory()
    old_builder, new_builder = Counting(), Counting()
    factory.register("fake", old_builder)
    old = built(await factory.get("fake"))
    factory.register("fake", new_builder, replace=True)
    new = built(await factory.get("fake"))
    assert new is not old
    assert (old_builder.calls, new_builder.calls) == (1, 1)
    assert old.closed == 0  # a caller may still be using it ...
    await factory.aclose()
    assert (old.closed, new.closed) == (1, 1)  # ... until the factory is closed


@pytest.mark.parametrize("key", ["", "   ", " padded", "padded\n", None, 5])
def test_a_key_must_be_a_non_empty_string(key: object) -> None:
    with pytest.raises(ConfigError, match="key must be a non-empty string"):
        ProviderFactory().register(key, FakeGenerator)  # type: ignore[arg-type]


def test_a_builder_must_be_callable() -> None:
    with pytest.raises(ConfigError, match=r"register\('fake', \.\.\.\): builder must be callable"):
        ProviderFactory().register("fake", FakeGenerator())  # type: ignore[arg-type]


async def test_unregister_forgets_the_key() -> None:
    factory = ProviderFactory()
    factory.register("fake", FakeGenerator)
    generator = built(await factory.get("fake"))
    factory.unregister("fake")
    assert "fake" not in factory
    assert isinstance((await factory.get("fake")).failure(), ProviderNotFoundError)
    await factory.aclose()
    assert generator.closed == 1


def test_unregistering_an_unknown_key_is_a_config_error() -> None:
    factory = ProviderFactory()
    factory.register("a", FakeGenerator)
    with pytest.raises(ConfigError, match=r"no provider 'b'; known: a"):
        factory.unregister("b")


def test_keys_are_sorted() -> None:
    factory = ProviderFactory()
    for key in ("zeta", "alpha", "mid"):
        factory.register(key, FakeGenerator)
    assert factory.keys() == ("alpha", "mid", "zeta")
    assert "mid" in factory
    assert "keys=('alpha', 'mid', 'zeta')" in repr(factory)


# -- building ---------------------------------------------------------------------------------


async def test_fifty_concurrent_gets_build_once() -> None:
    factory = ProviderFactory()
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def slow_builder(**options: Any) -> FakeGenerator:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return FakeGenerator(**options)

    factory.register("fake", slow_builder)
    tasks = [asyncio.create_task(factory.get("fake", model="m")) for _ in range(50)]
    await started.wait()  # the first get is building; the other 49 are queued on the lock
    release.set()
    outcomes = await asyncio.gather(*tasks)
    generators = {id(outcome.unwrap()) for outcome in outcomes}
    assert calls == 1
    assert len(generators) == 1


async def test_an_async_builder_is_awaited() -> None:
    async def build(**options: Any) -> FakeGenerator:
        return FakeGenerator(**options)

    factory = ProviderFactory()
    factory.register("fake", build)
    assert built(await factory.get("fake", model="x")).options == {"model": "x"}


async def test_a_builder_raising_config_error_gives_that_failure_and_is_not_cached() -> None:
    problem = ConfigError("OpenAIChat(model=...) must be a non-empty string")
    calls = 0

    def builder(**options: Any) -> FakeGenerator:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise problem
        return FakeGenerator(**options)

    factory = ProviderFactory()
    factory.register("fake", builder)
    assert (await factory.get("fake")).failure() is problem
    assert isinstance(await factory.get("fake"), Success)  # a failed build is tried again
    assert calls == 2


@pytest.mark.parametrize(
    "raised", [ValueError("bad url"), TypeError("unexpected keyword 'modle'"), RuntimeError("x")]
)
async def test_any_other_builder_error_becomes_a_config_error_naming_the_key(
    raised: Exception,
) -> None:
    def builder(**options: Any) -> FakeGenerator:
        raise raised

    factory = ProviderFactory()
    factory.register("fake", builder)
    error = (await factory.get("fake")).failure()
    assert type(error) is ConfigError
    assert "building provider 'fake' failed" in str(error)
    assert type(raised).__name__ in str(error)
    assert error.__cause__ is raised


async def test_a_builder_returning_a_non_generator_is_a_config_error_naming_the_type() -> None:
    class NotAGenerator:
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    thing = NotAGenerator()
    factory = ProviderFactory()
    factory.register("fake", lambda **_: thing)  # type: ignore[arg-type]
    error = (await factory.get("fake")).failure()
    assert isinstance(error, ConfigError)
    assert "'fake'" in str(error)
    assert "NotAGenerator" in str(error)
    assert thing.closed  # nobody else holds it, so the factory released it


async def test_cancellation_while_building_propagates_and_frees_the_key() -> None:
    release = asyncio.Event()

    async def builder(**options: Any) -> FakeGenerator:
        await release.wait()
        return FakeGenerator(**options)

    factory = ProviderFactory()
    factory.register("fake", builder)
    task = asyncio.create_task(factory.get("fake"))
    await asyncio.sleep(0)  # let the task reach the builder (a yield, not a real sleep)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert isinstance(await factory.get("fake"), Success)


async def test_the_cache_is_bounded_and_says_so_past_max_cached() -> None:
    """5,000 distinct overrides would keep 5,000 generators and their clients: past
    ``max_cached`` a new set of overrides is a ConfigError naming it; those kept still come."""
    factory = ProviderFactory(max_cached=2)
    builder = Counting()
    factory.register("fake", builder)
    first = built(await factory.get("fake", temperature=0.1))
    built(await factory.get("fake", temperature=0.2))
    error = (await factory.get("fake", temperature=0.3)).failure()
    assert isinstance(error, ConfigError)
    assert "max_cached=2" in str(error)
    assert "GenerationRequest" in str(error)
    assert built(await factory.get("fake", temperature=0.1)) is first
    assert builder.calls == 2
    await factory.aclose()
    again = await factory.get("fake", temperature=0.3)  # closing empties the cache
    assert isinstance(again, Success)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_max_cached_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"ProviderFactory\(max_cached=...\)"):
        ProviderFactory(max_cached=bad)  # type: ignore[arg-type]


async def test_unhashable_overrides_are_built_every_time() -> None:
    factory = ProviderFactory()
    builder = Counting()
    factory.register("fake", builder)
    first = built(await factory.get("fake", stop=["END"]))
    second = built(await factory.get("fake", stop=["END"]))
    assert first is not second
    assert first.options == second.options == {"stop": ["END"]}
    assert builder.calls == 2
    await factory.aclose()
    assert first.closed == second.closed == 0  # uncached generators belong to the caller


async def test_a_build_finishing_after_replace_is_not_cached() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def old_builder(**options: Any) -> FakeGenerator:
        started.set()
        await release.wait()
        return FakeGenerator(version="old")

    factory = ProviderFactory()
    factory.register("fake", old_builder)
    pending = asyncio.create_task(factory.get("fake"))
    await started.wait()
    factory.register("fake", lambda **_: FakeGenerator(version="new"), replace=True)
    release.set()
    stale = built(await pending)
    assert stale.options == {"version": "old"}  # the caller asked before the replacement
    assert built(await factory.get("fake")).options == {"version": "new"}
    await factory.aclose()
    assert stale.closed == 1


async def test_a_get_waiting_while_the_key_is_unregistered_is_not_found() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def builder(**options: Any) -> FakeGenerator:
        started.set()
        await release.wait()
        return FakeGenerator(**options)

    factory = ProviderFactory()
    factory.register("fake", builder)
    first = asyncio.create_task(factory.get("fake", model="a"))
    await started.wait()
    second = asyncio.create_task(factory.get("fake", model="b"))
    await asyncio.sleep(0)  # second now waits for the key's lock
    factory.unregister("fake")
    release.set()
    assert isinstance(await first, Success)
    assert isinstance((await second).failure(), ProviderNotFoundError)


# -- closing ----------------------------------------------------------------------------------


async def test_aclose_closes_every_cached_generator_once_and_forgets_them() -> None:
    class SyncClose(FakeGenerator):
        def aclose(self) -> None:  # type: ignore[override]
            self.closed += 1

    class NoClose:
        name = "no-close"

        async def generate(
            self, request: GenerationRequest
        ) -> Result[GenerationResult, RequestError]:
            return Success(GenerationResult(text="", model="m"))

        def generate_stream(
            self, request: GenerationRequest
        ) -> AsyncIterator[Result[str, RequestError]]:
            return GenerationStream(lambda: _nothing())

    shared = FakeGenerator()
    factory = ProviderFactory()
    factory.register("async", FakeGenerator)
    factory.register("sync", SyncClose)
    factory.register("none", NoClose)
    factory.register("shared", lambda **_: shared)
    a = built(await factory.get("async"))
    s = built(await factory.get("sync"))
    await factory.get("none")
    await factory.get("shared", x=1)
    await factory.get("shared", x=2)  # the same object cached under two override sets
    await factory.aclose()
    assert (a.closed, s.closed, shared.closed) == (1, 1, 1)
    assert built(await factory.get("async")) is not a  # the cache was emptied


async def test_one_generator_failing_to_close_does_not_keep_the_others_open() -> None:
    class Broken(FakeGenerator):
        async def aclose(self) -> None:
            raise OSError("socket already gone")

    factory = ProviderFactory()
    factory.register("broken", Broken)
    factory.register("fine", FakeGenerator)
    await factory.get("broken")
    fine = built(await factory.get("fine"))
    with capture_logs() as logs:
        await factory.aclose()
    assert fine.closed == 1
    assert [entry["event"] for entry in logs] == ["httprail.provider_close_failed"]
    assert "socket already gone" in logs[0]["error"]


async def test_async_with_closes_the_factory() -> None:
    async with ProviderFactory() as factory:
        factory.register("fake", FakeGenerator)
        generator = built(await factory.get("fake"))
    assert generator.closed == 1
