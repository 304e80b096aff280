"""``ProviderFactory``: generators built on first use from registered builders, then cached."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, Self, TypeAlias

from returns.result import Failure, Result, Success

from .._args import is_int, need
from .._closing import ClosesOnExit
from .._errors import ConfigError, ProviderNotFoundError, RequestError
from .._log import get_logger
from ._protocol import Generator, StreamItem
from ._types import GenerationRequest, GenerationResult

if TYPE_CHECKING:
    from .._discovery import PluginRegistry
    from .._settings import HttpSettings
    from .._stack import Stack, StackDeclaration

__all__ = ["ProviderBuilder", "ProviderFactory", "StackGenerator"]

ProviderBuilder: TypeAlias = Callable[..., Generator | Awaitable[Generator]]
"""Builds a generator from keyword overrides; may be a plain or an async callable."""

_CacheKey: TypeAlias = tuple[str, Hashable]

DEFAULT_MAX_CACHED = 256
"""How many generators a factory keeps built (one per key and distinct overrides)."""

_log = get_logger("httprail.generators")


class ProviderFactory(ClosesOnExit):
    """A registry of generator builders by key, building each generator once.

    ``get(key, **overrides)`` calls the key's builder as ``builder(**overrides)`` the first
    time and caches the generator per key and overrides (when the overrides are hashable;
    otherwise every call builds a new one, which then belongs to the caller). Concurrent
    ``get`` calls for one key build it once. ``aclose()`` closes every cached generator.

    Each cached generator holds what its builder opened (a client and its connections), so the
    cache is bounded: past ``max_cached`` generators, ``get`` with overrides not seen before is
    ``Failure(ConfigError)`` naming ``max_cached`` rather than a memory that grows with every
    distinct value (what varies per call, a temperature, belongs in the ``GenerationRequest``).

    Example:
        >>> factory = ProviderFactory()
        >>> factory.register("openai-chat", lambda **o: OpenAIChat(client, **o))  # doctest: +SKIP
        >>> match await factory.get("openai-chat", model="gpt-4o-mini"):  # doctest: +SKIP
        ...     case Success(generator): ...
        ...     case Failure(ProviderNotFoundError(known=known)): ...
    """

    def __init__(self, *, max_cached: int = DEFAULT_MAX_CACHED) -> None:
        need(is_int(max_cached) and max_cached >= 1, "ProviderFactory", "max_cached",
             "an int >= 1", max_cached)  # fmt: skip
        self.max_cached = max_cached
        self._builders: dict[str, ProviderBuilder] = {}
        self._cache: dict[_CacheKey, Generator] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._versions: dict[str, int] = {}  # bumped when a key's builder changes
        self._retired: list[Generator] = []  # built by a replaced builder: closed by aclose()

    def __repr__(self) -> str:
        return f"ProviderFactory(keys={self.keys()!r}, built={len(self._cache)})"

    @classmethod
    def from_config(
        cls,
        source: StackDeclaration | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        registry: PluginRegistry | None = None,
        settings: HttpSettings | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Self:
        """A factory with one key per provider declared in a stack file (or dict).

        Every provider is built once here, so a mistake in the declaration (an unknown plugin,
        a bad option, a missing API key) is a ``ConfigError`` now rather than at first use.
        ``get(name, **overrides)`` then builds the provider's stack with ``overrides`` as
        generator options (``model="..."``); the generator it returns is a
        :class:`StackGenerator`, whose ``aclose()`` also closes the stack's connection pool.

        Args:
            source: as for :func:`httprail.build_stack` (``None``: the nearest stack file).
            registry: where plugin names are looked up (default: the discovered entry points).
            settings: the global settings (default: ``HttpSettings()``).
            environ: where ``api_key_env`` is read (default ``os.environ``).

        Raises:
            ConfigError: the declaration is wrong; the message names the file, provider,
                plugin and option.
        """
        from .._stack import _declaration, build_stack

        declaration = _declaration(source)

        def builder_of(name: str) -> Callable[..., StackGenerator]:
            def builder(**overrides: Any) -> StackGenerator:
                stack = build_stack(
                    declaration,
                    name,
                    registry=registry,
                    settings=settings,
                    environ=environ,
                    overrides=overrides,
                )
                return StackGenerator(stack)

            return builder

        factory = cls()
        for name in declaration.names():
            if declaration.entry(name)[0] == "provider":
                builder = builder_of(name)
                builder()  # validate now; nothing is opened until a request is sent
                factory.register(name, builder)
        return factory

    def register(self, key: str, builder: ProviderBuilder, *, replace: bool = False) -> None:
        """Register ``builder`` under ``key``.

        Args:
            key: a non-empty name (``"openai-chat"``).
            builder: called as ``builder(**overrides)``; returns a generator or an awaitable
                of one.
            replace: allow replacing an existing registration; its cached generators are
                dropped (and closed by :meth:`aclose`).

        Raises:
            ConfigError: the key is not a non-empty string, the builder is not callable, or the
                key is taken and ``replace`` is false.
        """
        if not isinstance(key, str) or not key.strip() or key != key.strip():
            raise ConfigError(
                f"ProviderFactory.register: key must be a non-empty string without surrounding "
                f"spaces, got {key!r}"
            )
        if not callable(builder):
            raise ConfigError(
                f"ProviderFactory.register({key!r}, ...): builder must be callable, "
                f"got {type(builder).__name__}"
            )
        if key in self._builders and not replace:
            raise ConfigError(
                f"ProviderFactory.register: provider {key!r} is already registered; "
                "pass replace=True to replace it"
            )
        self._retire(key)
        self._builders[key] = builder

    def unregister(self, key: str) -> None:
        """Forget ``key``; its cached generators are dropped (and closed by :meth:`aclose`).

        Raises:
            ConfigError: nothing is registered under ``key``.
        """
        if key not in self._builders:
            raise ConfigError(
                f"ProviderFactory.unregister: no provider {key!r}; "
                f"known: {', '.join(self.keys()) or '(none)'}"
            )
        self._retire(key)
        del self._builders[key]

    def keys(self) -> tuple[str, ...]:
        """The registered keys, sorted."""
        return tuple(sorted(self._builders))

    def __contains__(self, key: object) -> bool:
        return key in self._builders

    async def get(
        self, key: str, /, **overrides: Any
    ) -> Result[Generator, ProviderNotFoundError | ConfigError]:
        """The generator for ``key`` and ``overrides``, built on first use.

        Returns:
            The generator; ``Failure(ProviderNotFoundError)`` (listing the known keys) if
            ``key`` is not registered; ``Failure(ConfigError)`` if the builder raised or
            returned something that is not a :class:`Generator`, or if ``max_cached``
            generators are kept already and these overrides are new.
        """
        builder = self._builders.get(key) if isinstance(key, str) else None
        if builder is None:
            return Failure(ProviderNotFoundError(key, self.keys()))
        cache_key = _cache_key(key, overrides)
        if cache_key is not None and (cached := self._cache.get(cache_key)) is not None:
            return Success(cached)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            if cache_key is not None and (cached := self._cache.get(cache_key)) is not None:
                return Success(cached)
            builder = self._builders.get(key)
            if builder is None:  # unregistered while this call waited for the lock
                return Failure(ProviderNotFoundError(key, self.keys()))
            if cache_key is not None and len(self._cache) >= self.max_cached:
                return Failure(
                    ConfigError(
                        f"ProviderFactory: {len(self._cache)} generators are built and kept "
                        f"already (max_cached={self.max_cached}), one per key and distinct "
                        "overrides: pass what varies per call in the GenerationRequest, or "
                        "raise max_cached"
                    )
                )
            version = self._versions.get(key, 0)
            built = await _build(key, builder, overrides)
            if isinstance(built, Success) and cache_key is not None:
                if self._versions.get(key, 0) == version:
                    self._cache[cache_key] = built.unwrap()
                else:  # the builder was replaced while building: do not cache a stale one
                    self._retired.append(built.unwrap())
            return built

    def _retire(self, key: str) -> None:
        self._versions[key] = self._versions.get(key, 0) + 1
        for cache_key in [k for k in self._cache if k[0] == key]:
            self._retired.append(self._cache.pop(cache_key))

    async def aclose(self) -> None:
        """Close every generator this factory cached (those that have ``aclose``) and forget them.

        A generator failing to close does not stop the others from closing.
        """
        generators = [*self._cache.values(), *self._retired]
        self._cache.clear()
        self._retired.clear()
        seen: set[int] = set()
        for generator in generators:
            if id(generator) in seen:
                continue
            seen.add(id(generator))
            await _close(generator)


def _cache_key(key: str, overrides: dict[str, Any]) -> _CacheKey | None:
    """``(key, sorted overrides)``, or ``None`` if an override value is not hashable."""
    items = tuple(sorted(overrides.items(), key=lambda item: item[0]))
    try:
        hash(items)
    except TypeError:
        return None
    return (key, items)


async def _build(
    key: str, builder: ProviderBuilder, overrides: dict[str, Any]
) -> Result[Generator, ConfigError]:
    try:
        built: object = builder(**overrides)
        if inspect.isawaitable(built):
            built = await built
    except ConfigError as error:
        return Failure(error)
    except Exception as exc:  # noqa: BLE001 - a provider that cannot be built is a config problem
        wrapped = ConfigError(f"building provider {key!r} failed: {type(exc).__name__}: {exc}")
        wrapped.__cause__ = exc
        return Failure(wrapped)
    if not isinstance(built, Generator):
        await _close(built)  # nobody else holds it: release what it may own
        return Failure(
            ConfigError(
                f"the builder of provider {key!r} returned {type(built).__name__}, which is not "
                "a Generator (it needs name, async generate() and generate_stream())"
            )
        )
    return Success(built)


async def _close(generator: object) -> None:
    """Call ``generator.aclose()`` if it has one; a failure is logged, never raised."""
    close = getattr(generator, "aclose", None)
    if not callable(close):
        return
    try:
        outcome = close()
        if inspect.isawaitable(outcome):
            await outcome
    except Exception as exc:  # noqa: BLE001 - one failing to close must not keep others open
        _log.warning("httprail.provider_close_failed", provider=repr(generator), error=repr(exc))


class StackGenerator:
    """A provider's generator together with the stack it sends through.

    It is a :class:`Generator` (it forwards ``generate`` and ``generate_stream``) and closes the
    whole stack, generator and connection pool, on ``aclose()``.

    Attributes:
        stack: the built provider (its client, pipeline and settings).
    """

    def __init__(self, stack: Stack) -> None:
        if not isinstance(stack.generator, Generator):
            raise ConfigError(f"provider {stack.name!r}: {stack.generator!r} is not a Generator")
        self.stack = stack
        self._generator: Generator = stack.generator
        self.name: str = self._generator.name

    def __repr__(self) -> str:
        return f"StackGenerator({self.stack.name!r}, generator={self.name!r})"

    async def generate(self, request: GenerationRequest) -> Result[GenerationResult, RequestError]:
        """The provider's answer to ``request`` (see :meth:`Generator.generate`)."""
        return await self._generator.generate(request)

    def generate_stream(self, request: GenerationRequest) -> AsyncIterator[StreamItem]:
        """The provider's answer as a stream (see :meth:`Generator.generate_stream`)."""
        return self._generator.generate_stream(request)

    async def aclose(self) -> None:
        """Close the generator and the stack's connection pool."""
        await self.stack.aclose()
