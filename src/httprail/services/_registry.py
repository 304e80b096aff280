"""``ServiceRegistry``: named services, each with its own client, endpoints and health checks."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from returns.result import Failure, Result, Success

from .._args import need, need_callable, strings_of
from .._client import AsyncClient
from .._closing import ClosesOnExit, close_all
from .._discovery import PluginRegistry
from .._errors import ConfigError, ServiceNotFoundError
from .._pipeline import TerminalPlugin
from .._settings import HttpSettings
from .._stack import Stack, build_stack
from .._stack_file import StackDeclaration, load_stack_file
from ..middleware._redirects import origin_of
from ._balancer import BalancedTerminal, Balancer
from ._checks import HealthChecker, health_url_of
from ._config import ServiceConfig, check_endpoint
from ._env import legacy_services, services_from_env
from ._status import EndpointHealth, RegistryHealth, ServiceHealth, ServiceStatus
from ._typed import ServiceClient

__all__ = ["ServiceRegistry"]

S = TypeVar("S", bound=ServiceClient)

_MERGED = ("settings", "health_check", "balancer", "options", "headers")


@dataclass(slots=True)
class _Service:
    name: str
    config: ServiceConfig
    stack: Stack
    balancer: Balancer
    checker: HealthChecker | None


class ServiceRegistry(ClosesOnExit):
    """Named services, each with its own client (stack, timeouts, auth), endpoints and health.

    Every client is built when the registry is (so a mistake is a :class:`ConfigError` at
    start-up, naming the variable or key); :meth:`start` (or ``async with``) starts the health
    checks, :meth:`aclose` stops them and closes every client.

    Args:
        services: the services by name (names are matched case-insensitively).
        settings: the global settings each service's own values apply to (default:
            ``HttpSettings()``).
        plugins: where stack plugin names are looked up (default: the discovered ones).
        environ: where ``api_key_env`` variables are read (default ``os.environ``).
        terminal: builds each service's terminal from its name, instead of the declared one
            (a ``MockTerminal`` in tests).
        clock: monotonic seconds for the balancers (``FakeClock`` in tests).
        sleep: the health checks' wait between rounds.
        source: how errors name where the services came from.

    Example:
        >>> async with ServiceRegistry.from_env() as registry:  # doctest: +SKIP
        ...     match registry.client("user"):
        ...         case Success(client):
        ...             outcome = await client.get("/users/1")
    """

    def __init__(
        self,
        services: Mapping[str, ServiceConfig],
        *,
        settings: HttpSettings | None = None,
        plugins: PluginRegistry | None = None,
        environ: Mapping[str, str] | None = None,
        terminal: Callable[[str], TerminalPlugin] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        source: str = "<services>",
    ) -> None:
        owner = "ServiceRegistry"
        declared = isinstance(services, Mapping) and all(
            isinstance(k, str) and isinstance(v, ServiceConfig) for k, v in services.items()
        )
        need(declared, owner, "services", "a mapping of service names to ServiceConfig", services)
        for label, value, kind in (
            ("settings", settings, HttpSettings),
            ("plugins", plugins, PluginRegistry),
            ("environ", environ, Mapping),
        ):
            need(value is None or isinstance(value, kind), owner, label,
                 f"a {kind.__name__} or None", value)  # fmt: skip
        need_callable(owner, "terminal", terminal, optional=True)
        need_callable(owner, "clock", clock)
        need_callable(owner, "sleep", sleep)
        need(isinstance(source, str), owner, "source", "a str", source)
        base = settings if settings is not None else HttpSettings()
        self._services: dict[str, _Service] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        for given, config in services.items():
            name = given.lower()
            if name in self._services:
                raise ConfigError(f"{source}: service {given!r} is declared twice")
            self._services[name] = _build(
                name, config, base, plugins, environ, terminal, clock, sleep, source
            )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        settings: HttpSettings | None = None,
        stack_file: StackDeclaration | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        legacy: Sequence[str] = (),
        **options: Any,
    ) -> ServiceRegistry:
        """The services a stack file's ``[services.*]`` tables, the ``HTTP_SERVICES__*``
        variables and (for the names in ``legacy``) ``<NAME>_SERVICE_HOST``/``_PORT``/
        ``_PROTOCOL``/``_HEALTH_PATH`` declare; the variables win over the file, key by key.

        Args:
            environ: the variables (default ``os.environ``).
            settings: the global settings (default ``HttpSettings()``).
            stack_file: a stack file path, a parsed declaration or a dict (``None``: none).
            legacy: service names read from the ``<NAME>_SERVICE_*`` convention.
            options: passed to :class:`ServiceRegistry` (``terminal``, ``clock``, ...).

        Raises:
            ConfigError: one line naming the variable or key.
        """
        env = os.environ if environ is None else environ
        need(isinstance(env, Mapping), "ServiceRegistry.from_env", "environ",
             "a mapping of variable names to values, or None", env)  # fmt: skip
        legacy = strings_of("ServiceRegistry.from_env", "legacy", legacy, "service names")
        read = ("HTTP_SERVICES__", *(f"{name.upper()}_SERVICE_" for name in legacy))
        for variable, value in env.items():  # the variables read below hold text
            if isinstance(variable, str) and variable.startswith(read):
                need(isinstance(value, str), "ServiceRegistry.from_env", "environ",
                     f"text values ({variable} is not)", type(value).__name__)  # fmt: skip
        tables: dict[str, dict[str, Any]] = {}
        sources: dict[str, dict[str, str]] = {}
        source = "environment"
        if stack_file is not None:
            declaration = _declaration(stack_file)
            source = f"{declaration.source} + environment"
            for name, entry in declaration.services.items():
                table = entry.model_dump(exclude={"settings"})
                table["settings"] = entry.settings.model_dump(exclude_none=True)
                where = {k: f"{declaration.source}: service {name!r}, {k}" for k in table}
                for key in ("health_check", "balancer", "settings"):
                    where.update({f"{key}.{k}": f"{where[key]}.{k}" for k in table[key]})
                _merge(tables, sources, {name.lower(): table}, {name.lower(): where})
        _merge(tables, sources, *legacy_services(env, legacy))
        _merge(tables, sources, *services_from_env(env))
        for name in legacy:
            if name.lower() not in tables:
                raise ConfigError(
                    f"{name.upper()}_SERVICE_HOST: not set (service {name!r} was asked for "
                    "with legacy=...)"
                )
        configs = {}
        for name, table in tables.items():
            if not table.get("base_url") and not table.get("endpoints"):
                variable = f"HTTP_SERVICES__{name.upper()}__BASE_URL"
                raise ConfigError(f"{variable}: not set (service {name!r} has no URL)")
            configs[name] = ServiceConfig.from_entry(name, table, sources[name])
        return cls(configs, settings=settings, environ=env, source=source, **options)

    def __repr__(self) -> str:
        return f"ServiceRegistry({list(self._services)})"

    def names(self) -> tuple[str, ...]:
        """The services' names, sorted."""
        return tuple(sorted(self._services))

    def _find(self, name: str) -> _Service | None:
        return self._services.get(name) or self._services.get(name.lower())

    def client(self, name: str) -> Result[AsyncClient, ServiceNotFoundError]:
        """The client of service ``name`` (the same one every time), or a Failure listing the
        known names."""
        service = self._find(name)
        if service is None:
            return Failure(ServiceNotFoundError(name, self.names()))
        return Success(service.stack.client)

    def typed(self, name: str, cls: type[S]) -> Result[S, ServiceNotFoundError]:
        """A typed client ``cls`` (a :class:`~httprail.services.ServiceClient`) over service
        ``name``'s client (built once per call; the registry keeps closing the client)."""
        return self.client(name).map(cls)

    def config(self, name: str) -> Result[ServiceConfig, ServiceNotFoundError]:
        """What service ``name`` was declared with."""
        service = self._find(name)
        if service is None:
            return Failure(ServiceNotFoundError(name, self.names()))
        return Success(service.config)

    def balancer(self, name: str) -> Result[Balancer, ServiceNotFoundError]:
        """The endpoints of service ``name`` and their state."""
        service = self._find(name)
        if service is None:
            return Failure(ServiceNotFoundError(name, self.names()))
        return Success(service.balancer)

    async def start(self) -> None:
        """Start the health checks of every service with a health URL (once)."""
        if self._tasks or self._closed:
            return
        for service in self._services.values():
            if service.checker is not None:
                task = asyncio.create_task(
                    service.checker.run(), name=f"httprail.health_checks:{service.name}"
                )
                self._tasks.append(task)

    async def __aenter__(self) -> ServiceRegistry:
        await self.start()
        return self

    async def aclose(self) -> None:
        """Stop the health checks and close every service's client.

        Raises:
            Exception: what closing a client raised (an ``ExceptionGroup`` if several).
        """
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await close_all((s.stack.aclose for s in self._services.values()), "the service registry")

    async def health(self) -> RegistryHealth:
        """Every service's status, endpoints and upstream snapshot (see :class:`ServiceHealth`)."""
        return RegistryHealth({name: await _health(s) for name, s in self._services.items()})


async def _health(service: _Service) -> ServiceHealth:
    balancer = service.balancer
    endpoints = tuple(
        EndpointHealth(e.shown, balancer.state(e), balancer.ejected_for(e), e.last_check)
        for e in balancer.endpoints
    )
    snapshot = getattr(service.stack.client, "health", None)
    upstreams = await snapshot() if callable(snapshot) else None
    healthy = sum(1 for e in endpoints if e.state == "healthy")
    status: ServiceStatus
    if healthy == 0:
        status = "down"
    elif healthy < len(endpoints) or getattr(upstreams, "status", "ok") != "ok":
        status = "degraded"
    else:
        status = "ready"
    return ServiceHealth(service.name, status, endpoints, upstreams)


def _build(
    name: str,
    config: ServiceConfig,
    settings: HttpSettings,
    plugins: PluginRegistry | None,
    environ: Mapping[str, str] | None,
    terminal: Callable[[str], TerminalPlugin] | None,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[Any]],
    source: str,
) -> _Service:
    base = check_endpoint(config.base, config.where("base_url", name))
    where = config.where("endpoints", name)
    endpoints = [check_endpoint(url, where) for url in config.endpoints]
    if not endpoints:
        endpoints = [base.copy_with(raw_path=b"/")]
    balancer = Balancer(base, endpoints, config.balancer, service=name, clock=clock)
    spread = len(endpoints) > 1 or any(
        e.prefix is not None or origin_of(e.url) != balancer.origin for e in balancer.endpoints
    )
    raw: list[TerminalPlugin] = []

    def wrap(built: TerminalPlugin) -> TerminalPlugin:
        raw.append(built)
        return BalancedTerminal(built, balancer) if spread else built

    declaration = StackDeclaration.from_mapping({"services": {name: config.entry()}}, source=source)
    stack = build_stack(
        declaration,
        name,
        registry=plugins,
        settings=settings,
        environ=environ,
        terminal=terminal(name) if terminal is not None else None,
        wrap_terminal=wrap,
    )
    checker = None
    if config.health_url is not None:
        url = health_url_of(base, config.health_url, config.where("health_url", name))
        checker = HealthChecker(balancer, url, raw[0], config.health_check, sleep=sleep)
    return _Service(name, config, stack, balancer, checker)


def _declaration(
    source: StackDeclaration | Mapping[str, Any] | str | os.PathLike[str],
) -> StackDeclaration:
    if isinstance(source, StackDeclaration):
        return source
    if isinstance(source, Mapping):
        return StackDeclaration.from_mapping(source)
    return load_stack_file(source)


def _merge(
    tables: dict[str, dict[str, Any]],
    sources: dict[str, dict[str, str]],
    new_tables: Mapping[str, Mapping[str, Any]],
    new_sources: Mapping[str, Mapping[str, str]],
) -> None:
    """``new_tables`` over ``tables``, key by key (the nested tables merged too)."""
    for name, table in new_tables.items():
        into = tables.setdefault(name, {})
        for key, value in table.items():
            if key in _MERGED and isinstance(value, Mapping):
                into[key] = {**into.get(key, {}), **value}
            else:
                into[key] = value
        sources.setdefault(name, {}).update(new_sources.get(name, {}))
