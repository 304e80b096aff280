"""``httprail_lifespan``: open clients and a service registry with the app, close them with it.

They live on ``app.state.httprail`` (an :class:`HttprailState`) for the app's lifetime, where
the dependencies (:func:`~httprail_fastapi.client_dep`, :func:`~httprail_fastapi.service_dep`)
and the health router find them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from httprail import AsyncClient, ConfigError, RequestError
from returns.result import Failure, Result, Success
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

__all__ = ["HttprailState", "Registry", "httprail_lifespan", "state_of"]


class _ServiceHealth(Protocol):
    @property
    def status(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


class _RegistryHealth(Protocol):
    @property
    def services(self) -> Mapping[str, _ServiceHealth]: ...


class Registry(Protocol):
    """What the integration needs of a service registry (``httprail.services.ServiceRegistry``
    has it): a client per name, its health, and a close. ``start()`` is called if it exists."""

    def names(self) -> tuple[str, ...]: ...
    def client(self, name: str) -> Result[AsyncClient, Any]: ...
    async def health(self) -> _RegistryHealth: ...
    async def aclose(self) -> None: ...


RegistrySource: TypeAlias = Registry | Callable[[], Registry]
ClientSource: TypeAlias = AsyncClient | Callable[[], AsyncClient]
AppLifespan: TypeAlias = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]


@dataclass
class HttprailState:
    """The clients and registry of a running app (``app.state.httprail``)."""

    registry: Registry | None = None
    clients: dict[str, AsyncClient] = field(default_factory=dict)
    services: dict[tuple[type[Any], str], Any] = field(default_factory=dict)

    def client(self, name: str) -> Result[AsyncClient, RequestError]:
        """The client called ``name``: one given in ``clients=``, else the registry's."""
        given = self.clients.get(name)
        if given is not None:
            return Success(given)
        if self.registry is not None:
            found: Result[AsyncClient, RequestError] = self.registry.client(name)
            return found
        known = ", ".join(sorted(self.clients)) or "(none)"
        return Failure(RequestError(f"no client or service {name!r}; known: {known}"))


def state_of(connection: HTTPConnection) -> HttprailState:
    """The app's :class:`HttprailState`.

    Raises:
        ConfigError: the app was not started with :func:`httprail_lifespan`.
    """
    state = getattr(connection.app.state, "httprail", None)
    if not isinstance(state, HttprailState):
        raise ConfigError(
            "app.state.httprail is not set: create the app with "
            "FastAPI(lifespan=httprail_lifespan(...))"
        )
    return state


def httprail_lifespan(
    *,
    registry: RegistrySource | None = None,
    clients: Mapping[str, ClientSource] | None = None,
    lifespan: AppLifespan | None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[Mapping[str, Any]]]:
    """A lifespan that opens ``registry`` and ``clients`` on startup and closes them on shutdown.

    Pass a factory (``ServiceRegistry.from_env``, ``lambda: AsyncClient(...)``) rather than an
    object when the app may start more than once (one ``TestClient`` per test): each start
    then builds fresh ones, where an object closed by the first shutdown stays closed.

    Args:
        registry: a service registry, or a function that builds one; its ``start()`` (active
            health checks) is awaited on startup.
        clients: named clients (or functions that build them), found before the registry's.
        lifespan: the app's own lifespan, run inside this one (the clients are open while it
            runs); the state it yields is passed on.

    Example:
        >>> app = FastAPI(  # doctest: +SKIP
        ...     lifespan=httprail_lifespan(
        ...         registry=ServiceRegistry.from_env,
        ...         clients={"github": lambda: AsyncClient("https://api.github.com")},
        ...     )
        ... )
    """
    client_sources = dict(clients or {})

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[Mapping[str, Any]]:
        async with AsyncExitStack() as stack:
            state = HttprailState()
            if registry is not None:
                built = registry() if callable(registry) else registry
                stack.push_async_callback(built.aclose)
                start: Callable[[], Awaitable[None]] | None = getattr(built, "start", None)
                if start is not None:
                    await start()
                state.registry = built
            for name, source in client_sources.items():
                client = source if isinstance(source, AsyncClient) else source()
                stack.push_async_callback(client.aclose)
                state.clients[name] = client
            app.state.httprail = state
            if lifespan is None:
                yield {"httprail": state}
                return
            async with lifespan(app) as inner:
                yield {**(inner or {}), "httprail": state}

    return run
