"""Declared stacks: providers and services described in a stack file (or a dict) become clients.

A stack file is ``httprail.toml`` (top level) or ``pyproject.toml`` (under ``[tool.httprail]``)::

    [providers.deepseek]
    base_url = "https://api.deepseek.com/v1"
    api_key_env = "DEEPSEEK_API_KEY"
    stack = ["logging", "retry", "circuit_breaker", "auth", "openai-chat"]
    settings = { timeout_read = 90 }          # per-provider HTTP_ overrides

    [providers.deepseek.options.retry]        # options of one plugin of the stack
    max_retries = 2

    [providers.deepseek.options.openai-chat]
    model = "deepseek-chat"

    [services.billing]                        # a service: the same, with no generator
    base_url = "http://billing.internal"

Names are looked up in the plugin registry (entry points); the last name of a provider's stack
is a generator. Every problem is a :class:`ConfigError` naming the file, the provider or
service, the plugin and the option, found when the file is loaded where it can be: base URLs
(absolute ``http``/``https``), headers (no control character such as CR, LF or NUL), settings
(their rules and bounds), nesting (at most 32 levels). Values are never quoted where they may
be secrets.

TLS and proxies are settings: ``settings = { ca_bundle = "certs/ca.pem", proxy_url = "..." }``;
a relative file path is relative to the stack file's folder.
"""

from __future__ import annotations

import inspect
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from ._client import AsyncClient
from ._closing import ClosesOnExit
from ._discovery import PluginRegistry, PluginSpec, default_registry, normalize_name
from ._errors import ConfigError
from ._pipeline import MiddlewarePlugin, Pipeline, TerminalPlugin
from ._settings import HttpSettings, ProviderOverrides
from ._stack_file import (
    STACK_FILE,
    Kind,
    StackDeclaration,
    _Entry,
    find_stack_file,
    load_stack_file,
    one_line,
    quoted,
)

__all__ = ["Stack", "StackDeclaration", "build_stack", "find_stack_file", "load_stack_file"]

# Options whose value is never quoted in an error: they may hold a secret.
_SECRET_NAME = re.compile(r"key|token|secret|passw|credential|auth|cookie", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Stack(ClosesOnExit):
    """A built provider or service: its client (middleware + terminal) and, for a provider,
    its generator. Close it (or use it as an async context manager) to close the pool."""

    name: str
    kind: Kind
    client: AsyncClient
    generator: Any | None
    settings: HttpSettings
    stores: tuple[Any, ...] = ()  # stores it built (store = "redis"), closed with it

    @property
    def pipeline(self) -> Pipeline:
        """The middleware and terminal requests go through."""
        return self.client.pipeline

    async def aclose(self) -> None:
        """Close the generator (if it can be closed), the client's connection pool and the
        stores the stack built."""
        closer = getattr(self.generator, "aclose", None)
        if closer is not None and inspect.iscoroutinefunction(closer):
            await closer()
        await self.client.aclose()
        for store in self.stores:
            closer = getattr(store, "aclose", None)
            if closer is not None and inspect.iscoroutinefunction(closer):
                await closer()


def build_stack(
    source: StackDeclaration | Mapping[str, Any] | str | os.PathLike[str] | None,
    name: str,
    *,
    registry: PluginRegistry | None = None,
    settings: HttpSettings | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    terminal: TerminalPlugin | None = None,
    wrap_terminal: Callable[[TerminalPlugin], TerminalPlugin] | None = None,
) -> Stack:
    """Build the provider or service ``name`` declared in ``source``.

    Args:
        source: a stack file path, a parsed declaration, a dict shaped like a stack file, or
            ``None`` to use the nearest stack file (see :func:`find_stack_file`).
        name: the provider or service to build.
        registry: where plugin names are looked up (default: the discovered entry points).
        settings: the global settings (default: ``HttpSettings()`` from ``HTTP_*`` variables).
        environ: where ``api_key_env`` is read (default ``os.environ``).
        overrides: generator options that win over the declared ones (a provider's
            ``model``, say); checked like declared options.
        terminal: send through this terminal instead of building the declared one.
        wrap_terminal: applied to the terminal before the client is built (the service
            registry puts its endpoint balancer there, inside every stage).

    Raises:
        ConfigError: anything wrong in the declaration, naming the file, the provider or
            service, the plugin and the option.
    """
    declaration = _declaration(source)
    kind, entry = declaration.entry(name)
    where = f"{declaration.source}: {kind} {name!r}"
    plugins = registry if registry is not None else default_registry()
    base = settings if settings is not None else HttpSettings()
    own = _settings_for(base, name, entry.settings, where)
    env = os.environ if environ is None else environ
    api_key = _api_key(entry, env, where)

    names = entry.stack
    if names is None:  # no stack declared: the default stack (services only)
        if kind == "provider":
            raise ConfigError(f"{where}: a provider needs a stack ending with a generator")
        names = []
        default = True
    else:
        default = False
    specs = _resolve(plugins, names, kind, where)
    options_of = {normalize_name(k): v for k, v in entry.options.items()}
    unused = sorted(k for k in entry.options if normalize_name(k) not in map(normalize_name, names))
    if unused:
        raise ConfigError(
            f"{where}: options given for {', '.join(map(repr, unused))}, "
            f"which {'is' if len(unused) == 1 else 'are'} not in its stack {names}"
        )
    middleware: list[MiddlewarePlugin] = []
    stores: dict[str, Any] = {}  # store = "redis" in several stages: one store for all
    generator_spec: PluginSpec | None = None
    generator_listed = ""
    for listed, spec in zip(names, specs, strict=True):
        if spec.group == "generators":
            generator_spec, generator_listed = spec, listed
            continue
        label = f"{where}, plugin {listed!r}"
        options = _with_store(
            options_of.get(normalize_name(listed), {}), plugins, own, stores, label
        )
        built = _build(spec, options, own, api_key, label)
        if not isinstance(built, MiddlewarePlugin):
            raise ConfigError(f"{where}, plugin {listed!r}: built {built!r}, not a middleware")
        middleware.append(built)
    if terminal is None:
        terminal_spec = _lookup(plugins, "transports", entry.terminal, f"{where}, terminal")
        terminal = _build(terminal_spec, {}, own, None, f"{where}, terminal {entry.terminal!r}")
        if not isinstance(terminal, TerminalPlugin):
            raise ConfigError(f"{where}: terminal {entry.terminal!r} built {terminal!r}")
    if wrap_terminal is not None:
        terminal = wrap_terminal(terminal)
    try:
        client = AsyncClient(
            entry.base_url,
            headers=entry.headers,
            plugins=None if default else middleware,
            terminal=terminal,
            settings=own,
            provider=name,
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if overrides and generator_spec is None:
        given = ", ".join(map(repr, overrides))
        raise ConfigError(f"{where}: overrides {given} given, but a service has no generator")
    generator = None
    if generator_spec is not None:
        options = {**options_of.get(normalize_name(generator_listed), {}), **(overrides or {})}
        label = f"{where}, generator {generator_listed!r}"
        generator = _build(generator_spec, options, own, None, label, client=client)
        if not callable(getattr(generator, "generate", None)):
            raise ConfigError(f"{label}: built {generator!r}, which has no generate()")
    return Stack(name, kind, client, generator, own, tuple(stores.values()))


def _declaration(
    source: StackDeclaration | Mapping[str, Any] | str | os.PathLike[str] | None,
) -> StackDeclaration:
    if isinstance(source, StackDeclaration):
        return source
    if isinstance(source, Mapping):
        return StackDeclaration.from_mapping(source)
    if source is None:
        found = find_stack_file()
        if found is None:
            raise ConfigError(
                f"no stack file: no {STACK_FILE} or pyproject.toml with [tool.httprail] "
                f"in {Path.cwd()} or its parents"
            )
        return load_stack_file(found)
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(
            f"a stack declaration must be a table (dict) or a stack file path, got {source!r}"
        )
    return load_stack_file(source)


def _settings_for(
    base: HttpSettings, name: str, declared: ProviderOverrides, where: str
) -> HttpSettings:
    """``base`` with the file's overrides for ``name``, then the environment's on top."""
    merged = declared.model_dump(exclude_none=True)
    from_env = base.providers.get(name.lower())
    if from_env is not None:
        merged.update(from_env.model_dump(exclude_none=True))
    if not merged:
        return base
    providers = {**base.providers, name.lower(): ProviderOverrides(**merged)}
    try:
        return base.model_copy(update={"providers": providers}).for_provider(name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _api_key(entry: _Entry, environ: Mapping[str, str], where: str) -> str | None:
    if entry.api_key_env is None:
        return None
    value = environ.get(entry.api_key_env, "").strip()
    if not value:
        raise ConfigError(f"{where}: api_key_env {entry.api_key_env!r} is not set or empty")
    return value


def _lookup(registry: PluginRegistry, group: Any, name: str, where: str) -> PluginSpec:
    try:
        return registry.get(group, name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _resolve(
    registry: PluginRegistry, names: list[str], kind: Kind, where: str
) -> list[PluginSpec]:
    specs: list[PluginSpec] = []
    seen: set[str] = set()
    for index, listed in enumerate(names):
        last = index == len(names) - 1
        name, colon, label = listed.partition(":")
        if colon and not (name.strip() and label.strip()):
            raise ConfigError(f"{where}: {listed!r} in its stack: expected 'plugin:label'")
        key = normalize_name(listed)
        if key in seen:
            raise ConfigError(
                f"{where}: {listed!r} is listed twice in its stack; to use a plugin twice, "
                f"label each use ('{name}:outer', '{name}:inner') and give options per label"
            )
        seen.add(key)
        group = registry.find(name)
        if group is None:
            known = ", ".join([*registry.names("plugins"), *registry.names("generators")])
            raise ConfigError(f"{where}: unknown plugin {name!r} in its stack; known: {known}")
        if group not in ("plugins", "generators"):
            raise ConfigError(f"{where}: {name!r} is a {group[:-1]}, not a stack plugin")
        spec = _lookup(registry, group, name, f"{where}, plugin {name!r}")
        if group == "generators" and not (last and kind == "provider"):
            rule = "last" if kind == "provider" else "in a provider's stack (not a service's)"
            raise ConfigError(f"{where}: generator {name!r} can only come {rule}")
        specs.append(spec)
    if kind == "provider" and (not specs or specs[-1].group != "generators"):
        raise ConfigError(f"{where}: a provider's stack must end with a generator")
    return specs


def _with_store(
    options: Mapping[str, Any],
    registry: PluginRegistry,
    settings: HttpSettings,
    stores: dict[str, Any],
    where: str,
) -> Mapping[str, Any]:
    """``options`` with a store given by name (``store = "redis"``) built from the
    ``httprail.stores`` plugins, by its ``from_settings`` (the URL from ``HTTP_REDIS_URL`` or
    the stack file's ``settings``); one store per name for the whole stack."""
    name = options.get("store")
    if not isinstance(name, str):
        return options
    key = normalize_name(name)
    if key not in stores:
        spec = _lookup(registry, "stores", name, f"{where}, option 'store'")
        stores[key] = _build(spec, {}, settings, None, f"{where}, store {name!r}")
    return {**options, "store": stores[key]}


def _build(
    spec: PluginSpec,
    options: Mapping[str, Any],
    settings: HttpSettings,
    api_key: str | None,
    where: str,
    *,
    client: AsyncClient | None = None,
) -> Any:
    """Check ``options`` against the factory's signature and types, then build the plugin."""
    factory = spec.factory
    parameters = _parameters(factory, skip_first=client is not None)
    builder = getattr(factory, "from_settings", None)
    if client is None and callable(builder):  # options only from_settings takes (Retry's store)
        extra = _parameters(builder, skip_first=True)
        parameters = {**{k: p for k, p in extra.items() if k != "**"}, **parameters}
    values = dict(options)
    if api_key is not None and "api_key" in parameters and "api_key" not in values:
        values["api_key"] = api_key
    _check_options(factory, parameters, values, where)
    from_settings = getattr(factory, "from_settings", None)
    try:
        if client is not None:
            return factory(client, **values)
        if callable(from_settings):
            return from_settings(settings, **values)
        if "settings" in parameters and "settings" not in values:
            return factory(settings, **values)
        return factory(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a plugin failing to build is a config problem
        raise ConfigError(f"{where}: failed to build: {type(exc).__name__}: {exc}") from None


def _parameters(factory: Callable[..., Any], *, skip_first: bool) -> dict[str, inspect.Parameter]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: accept anything
        return {"**": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}
    params = list(signature.parameters.values())
    if skip_first and params:
        params = params[1:]
    return {
        ("**" if p.kind is inspect.Parameter.VAR_KEYWORD else p.name): p
        for p in params
        if p.kind is not inspect.Parameter.VAR_POSITIONAL
    }


def _check_options(
    factory: Callable[..., Any],
    parameters: Mapping[str, inspect.Parameter],
    values: Mapping[str, Any],
    where: str,
) -> None:
    if "**" not in parameters:
        unknown = sorted(set(values) - set(parameters))
        if unknown:
            known = ", ".join(sorted(n for n in parameters if n not in ("settings",))) or "none"
            raise ConfigError(
                f"{where}: unknown option {unknown[0]!r}"
                + (f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else "")
                + f"; its options: {known}"
            )
    missing = [
        name
        for name, p in parameters.items()
        if name not in ("**", "settings")
        and p.default is inspect.Parameter.empty
        and p.kind is not inspect.Parameter.VAR_KEYWORD
        and name not in values
        and not callable(getattr(factory, "from_settings", None))
    ]
    if missing:
        raise ConfigError(f"{where}: missing required option {missing[0]!r}")
    hints = _hints(factory)
    for name, value in values.items():
        annotation = hints.get(name)
        if annotation is None:
            continue
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(
                annotation, config=ConfigDict(arbitrary_types_allowed=True, strict=True)
            )
        except Exception:  # noqa: BLE001 - pydantic cannot check it: the factory will
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            shown = "" if _SECRET_NAME.search(name) else f" (got {quoted(value)})"
            raise ConfigError(
                one_line(
                    f"{where}, option {name!r}: {first['msg'].removeprefix('Value error, ')}"
                    + shown
                )
            ) from None


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: skip the type check
        return {}
