"""Stack files: reading ``httprail.toml`` / ``[tool.httprail]`` (or a dict) into a checked
:class:`StackDeclaration`, before anything is built (see :mod:`httprail._stack`).

Checked when loaded: the shape (unknown keys, types), base URLs (absolute ``http``/``https``
with a host), headers (no control character such as CR, LF or NUL: a header line cut short
smuggles a request), settings (as :class:`ProviderOverrides`, with their rules and bounds)
and nesting (at most :data:`MAX_DEPTH` levels; a 3,000-deep value used to be a
``RecursionError``). Every problem is
one line naming the file, the provider or service and the key; a URL's userinfo and a header's
value are never quoted.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ._errors import ConfigError
from ._settings import ProviderOverrides, one_line, quoted
from ._validate import header_problem, url_problem

__all__ = [
    "MAX_DEPTH",
    "STACK_FILE",
    "Kind",
    "StackDeclaration",
    "find_stack_file",
    "load_stack_file",
    "one_line",
    "quoted",
    "read_toml",
]

STACK_FILE = "httprail.toml"
DEFAULT_TERMINAL = "aiohttp"
Kind = Literal["provider", "service"]
MAX_DEPTH = 32
"""The deepest nesting of tables and arrays a stack declaration may have."""
_PATH_SETTINGS = ("ca_bundle", "client_cert", "client_key")


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


class _ServiceEntry(_Entry):
    """A service: a provider's keys, and where it runs (``httprail.services`` reads these;
    ``health_check`` and ``balancer`` are checked there, key by key)."""

    endpoints: list[str] = Field(default_factory=list)
    health_url: str | None = Field(default=None, min_length=1)
    health_check: dict[str, Any] = Field(default_factory=dict)
    balancer: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _base_from_endpoints(cls, data: Any) -> Any:
        """No ``base_url`` but ``endpoints``: the first endpoint is the base URL."""
        if isinstance(data, Mapping) and "base_url" not in data:
            endpoints = data.get("endpoints")
            if isinstance(endpoints, list) and endpoints and isinstance(endpoints[0], str):
                return {**data, "base_url": endpoints[0]}
        return data

    @field_validator("endpoints")
    @classmethod
    def _absolute_endpoints(cls, value: list[str]) -> list[str]:
        for url in value:
            _Entry._absolute_http(url)
        return value


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: dict[str, _Entry] = Field(default_factory=dict)
    services: dict[str, _ServiceEntry] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StackDeclaration:
    """A parsed stack file (or dict): where it came from and its providers and services."""

    source: str
    providers: Mapping[str, _Entry]
    services: Mapping[str, _ServiceEntry]

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
            message = f"unknown {kind} {quoted(loc[-1])}" if loc else "unknown key"
        problems.append(f"{where}: {message}" if where else message)
    return one_line(f"{source}: " + "; ".join(problems[:5]))


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
    try:
        file = Path(path)
    except TypeError:
        shown = quoted(path)
        raise ConfigError(f"a stack file path must be a str or a path, got {shown}") from None
    data = read_toml(file, "the stack file")
    source = str(file)
    if file.name == "pyproject.toml":
        tool = data.get("tool")
        table = tool.get("httprail") if isinstance(tool, dict) else None
        if table is None:
            raise ConfigError(f"{file}: has no [tool.httprail] table")
        data, source = table, f"{file} [tool.httprail]"
    return StackDeclaration.from_mapping(_paths_from(data, file.parent), source=source)


def read_toml(file: Path, what: str) -> dict[str, Any]:
    """The TOML table in ``file`` (``what`` names it in errors: "the stack file").

    Raises:
        ConfigError: one line naming ``file``: it cannot be read, or is not TOML (nesting too
            deep to parse included).
    """
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read {what} ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(one_line(f"{file}: not valid TOML ({exc})")) from None
    except RecursionError:
        raise ConfigError(f"{file}: not valid TOML (nested too deeply to read)") from None
    except ValueError:  # after TOMLDecodeError, a ValueError too: a NUL byte in the path
        raise ConfigError(f"{quoted(str(file))}: cannot read {what} (not a usable path)") from None


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
