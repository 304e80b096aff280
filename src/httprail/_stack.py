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
(absolute ``http``/``https``), headers (no CR, LF or NUL), settings (their rules and bounds),
nesting (at most 32 levels). Values are never quoted where they may be secrets.

TLS and proxies are settings: ``settings = { ca_bundle = "certs/ca.pem", proxy_url = "..." }``;
a relative file path is relative to the stack file's folder.
"""

from __future__ import annotations

import inspect
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from ._client import AsyncClient
from ._closing import ClosesOnExit
from ._discovery import PluginRegistry, PluginSpec, default_registry, normalize_name
from ._errors import ConfigError
from ._pipeline import MiddlewarePlugin, Pipeline, TerminalPlugin
from ._settings import HttpSettings, ProviderOverrides
from ._validate import header_problem, url_problem

__all__ = ["Stack", "StackDeclaration", "build_stack", "find_stack_file", "load_stack_file"]

STACK_FILE = "httprail.toml"
DEFAULT_TERMINAL = "aiohttp"
Kind = Literal["provider", "service"]
MAX_DEPTH = 32
"""The deepest nesting of tables and arrays a stack declaration may have."""
_PATH_SETTINGS = ("ca_bundle", "client_cert", "client_key")
# Options whose value is never quoted in an error: they may hold a secret.
_SECRET_NAME = re.compile(r"key|token|secret|passw|credential|auth|cookie", re.IGNORECASE)
_QUOTE_LIMIT = 60


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1)
    api_key_env: str | None = Field(default=None, min_length=1)
    stack: list[str] | None = None
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    settings: ProviderOverrides = Field(default_factory=ProviderOverrides)
    headers: dict[str, str] = Field(default_factory=dict)
    terminal: str = DEFAULT_TERMINAL

    @field_validator("base_url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        problem = url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, ValueError, TypeError):
            raise ValueError("not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be absolute: http:// or https:// and a host")
        return value

    @field_validator("headers")
    @classmethod
    def _sendable(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            problem = header_problem(name, text)
            if problem is not None:
                raise ValueError(problem)
        return value


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: dict[str, _Entry] = Field(default_factory=dict)
    services: dict[str, _Entry] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StackDeclaration:
    """A parsed stack file (or dict): where it came from and its providers and services."""

    source: str
    providers: Mapping[str, _Entry]
    services: Mapping[str, _Entry]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> Self:
        """Validate a mapping shaped like a stack file.

        Raises:
            ConfigError: unknown keys or wrong types, naming ``source`` and where.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{source}: a stack declaration must be a table, got {type(data).__name__}"
            )
        deep = _too_deep(data)
        if deep is not None:
            raise ConfigError(f"{source}: {deep}: nested more than {MAX_DEPTH} levels deep")
        try:
            parsed = _File.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from None
        return cls(source, parsed.providers, parsed.services)

    def names(self) -> tuple[str, ...]:
        """Every provider and service name, sorted."""
        return tuple(sorted({*self.providers, *self.services}))

    def entry(self, name: str) -> tuple[Kind, _Entry]:
        """Whether ``name`` is a provider or a service, and its declaration.

        Raises:
            ConfigError: no such name (listing the declared ones).
        """
        if name in self.providers:
            return "provider", self.providers[name]
        if name in self.services:
            return "service", self.services[name]
        known = ", ".join(self.names()) or "none"
        raise ConfigError(f"{self.source}: no provider or service {name!r}; declared: {known}")


def _describe(exc: ValidationError, source: str) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err.get("loc", ())]
        where = _where(loc[:8])
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            kind = "setting" if "settings" in loc[2:3] else "key"
            message = f"unknown {kind} {_quoted(loc[-1])}" if loc else "unknown key"
        problems.append(f"{where}: {message}" if where else message)
    return _one_line(f"{source}: " + "; ".join(problems[:5]))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _quoted(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # pragma: no cover - depth is checked before anything is quoted
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def _too_deep(data: Mapping[str, Any]) -> str | None:
    """Where ``data`` nests more than :data:`MAX_DEPTH` tables or arrays (``None``: it does not).

    Checked without recursion, before anything else looks at the data (pydantic, ``repr``).
    """
    pending: list[tuple[Any, int, str]] = [(data, 0, "")]
    while pending:
        value, depth, where = pending.pop()
        if depth > MAX_DEPTH:
            return where or "the declaration"
        if isinstance(value, Mapping):
            children = [(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            children = [(v, f"{where}[{i}]") for i, v in enumerate(value)]
        else:
            continue
        pending.extend((child, depth + 1, at) for child, at in children)
    return None


def _where(loc: list[str]) -> str:
    if len(loc) >= 2 and loc[0] in ("providers", "services"):
        kind = "provider" if loc[0] == "providers" else "service"
        rest = loc[2:]
        text = f"{kind} {loc[1]!r}"
        if len(rest) >= 2 and rest[0] == "options":
            text += f", plugin {rest[1]!r}"
            rest = rest[2:]
        if rest:
            text += f", {'.'.join(rest)}"
        return text
    return ".".join(loc)


def load_stack_file(path: str | os.PathLike[str]) -> StackDeclaration:
    """Read a stack file: ``pyproject.toml`` (its ``[tool.httprail]`` table) or any TOML file.

    Raises:
        ConfigError: the file is missing, is not TOML, or does not declare a valid stack.
    """
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the stack file ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(_one_line(f"{file}: not valid TOML ({exc})")) from None
    except RecursionError:
        raise ConfigError(f"{file}: not valid TOML (nested too deeply to read)") from None
    source = str(file)
    if file.name == "pyproject.toml":
        tool = data.get("tool")
        table = tool.get("httprail") if isinstance(tool, dict) else None
        if table is None:
            raise ConfigError(f"{file}: has no [tool.httprail] table")
        data, source = table, f"{file} [tool.httprail]"
    return StackDeclaration.from_mapping(_paths_from(data, file.parent), source=source)


def _paths_from(data: Any, folder: Path) -> Any:
    """``data`` with the relative TLS file paths of its ``settings`` tables made relative to
    ``folder`` (the stack file's), not to the working directory."""
    if not isinstance(data, dict):
        return data
    fixed = dict(data)
    for kind in ("providers", "services"):
        entries = fixed.get(kind)
        if not isinstance(entries, dict):
            continue
        fixed[kind] = entries = dict(entries)
        for name, entry in entries.items():
            own = entry.get("settings") if isinstance(entry, dict) else None
            if not isinstance(own, dict):
                continue
            own = dict(own)
            for key in _PATH_SETTINGS:
                value = own.get(key)
                if isinstance(value, str) and value.strip() and not Path(value).is_absolute():
                    own[key] = str(folder / value)
            entries[name] = {**entry, "settings": own}
    return fixed


def find_stack_file(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``httprail.toml``, or ``pyproject.toml`` with ``[tool.httprail]``, from
    ``start`` (default: the working directory) up to the filesystem root."""
    here = Path.cwd() if start is None else Path(start)
    for folder in (here, *here.parents):
        candidate = folder / STACK_FILE
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
                continue
            if isinstance(data.get("tool"), dict) and "httprail" in data["tool"]:
                return pyproject
    return None


@dataclass(frozen=True, slots=True)
class Stack(ClosesOnExit):
    """A built provider or service: its client (middleware + terminal) and, for a provider,
    its generator. Close it (or use it as an async context manager) to close the pool."""

    name: str
    kind: Kind
    client: AsyncClient
    generator: Any | None
    settings: HttpSettings

    @property
    def pipeline(self) -> Pipeline:
        """The middleware and terminal requests go through."""
        return self.client.pipeline

    async def aclose(self) -> None:
        """Close the generator (if it can be closed) and the client's connection pool."""
        closer = getattr(self.generator, "aclose", None)
        if closer is not None and inspect.iscoroutinefunction(closer):
            await closer()
        await self.client.aclose()


def build_stack(
    source: StackDeclaration | Mapping[str, Any] | str | os.PathLike[str] | None,
    name: str,
    *,
    registry: PluginRegistry | None = None,
    settings: HttpSettings | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
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
    generator_spec: PluginSpec | None = None
    generator_listed = ""
    for listed, spec in zip(names, specs, strict=True):
        if spec.group == "generators":
            generator_spec, generator_listed = spec, listed
            continue
        options = options_of.get(normalize_name(listed), {})
        built = _build(spec, options, own, api_key, f"{where}, plugin {listed!r}")
        if not isinstance(built, MiddlewarePlugin):
            raise ConfigError(f"{where}, plugin {listed!r}: built {built!r}, not a middleware")
        middleware.append(built)
    terminal_spec = _lookup(plugins, "transports", entry.terminal, f"{where}, terminal")
    terminal = _build(terminal_spec, {}, own, None, f"{where}, terminal {entry.terminal!r}")
    if not isinstance(terminal, TerminalPlugin):
        raise ConfigError(f"{where}: terminal {entry.terminal!r} built {terminal!r}")
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
    return Stack(name, kind, client, generator, own)


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
            shown = "" if _SECRET_NAME.search(name) else f" (got {_quoted(value)})"
            raise ConfigError(
                _one_line(
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
