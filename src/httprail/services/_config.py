"""What a service is: its base URL, endpoints, health check and balancer options, and its stack.

A :class:`ServiceConfig` is built by hand, from a stack file's ``[services.<name>]`` table or
from the environment (:mod:`httprail.services._env`); every problem is a one-line
:class:`ConfigError` naming the variable or key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._args import need, strings_of
from .._errors import ConfigError
from .._settings import DAY, ProviderOverrides, one_line, quoted
from .._validate import url_problem

__all__ = ["BalancerOptions", "HealthCheck", "Policy", "ServiceConfig", "check_endpoint"]

Policy = Literal["round_robin", "least_request"]
"""How an endpoint is picked per attempt: in turn, or the less busy of two picked at random."""

_Seconds = Annotated[float, Field(gt=0, le=DAY, allow_inf_nan=False)]
_Count = Annotated[int, Field(ge=1, le=1000)]
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_M = TypeVar("_M", bound=BaseModel)


class _Options(BaseModel):
    """A table of options: built with a wrong value, a ``ConfigError`` naming the field (the
    pydantic ``ValidationError`` is its cause, which a stack file's loader reads to name the
    key where the value came from)."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = _problems(type(self), exc, lambda key: key)
            raise ConfigError(f"{type(self).__name__}(...): {problems}") from exc


class HealthCheck(_Options):
    """Active health checks of a service's endpoints (run when the service has a health URL).

    Attributes:
        interval: seconds between two probes of an endpoint.
        timeout: seconds a probe may take; longer is a failed probe.
        healthy_threshold: probes in a row that must pass to mark an unhealthy endpoint healthy.
        unhealthy_threshold: probes in a row that must fail to mark an endpoint unhealthy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: _Seconds = 10.0
    timeout: _Seconds = 2.0
    healthy_threshold: _Count = 2
    unhealthy_threshold: _Count = 3


class BalancerOptions(_Options):
    """How attempts are spread over endpoints and when an endpoint is ejected (Envoy's
    outlier detection, consecutive-failure flavour).

    Attributes:
        policy: ``round_robin`` or ``least_request`` (power of two choices on in-flight
            requests).
        consecutive_failures: 5xx answers or transport failures in a row that eject an endpoint.
        base_ejection_time: seconds of the first ejection; the n-th lasts n times as long.
        max_ejection_time: the longest one ejection lasts.
        max_ejection_percent: at most this share of the endpoints is ejected at once (at least
            one may be, but never the last usable one).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Policy = "round_robin"
    consecutive_failures: _Count = 5
    base_ejection_time: _Seconds = 30.0
    max_ejection_time: _Seconds = 300.0
    max_ejection_percent: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 50.0


_MAX_PORT = 65535
# A host as httpx keeps it (IDNA already encoded): letters, digits, '-', '_', '.'.
_HOST = re.compile(rb"[A-Za-z0-9._-]+")


def check_endpoint(value: str, where: str) -> httpx.URL:
    """``value`` as an endpoint URL: absolute ``http``/``https`` with a host, no credentials,
    query or fragment (a path is a prefix that replaces the base URL's).

    Raises:
        ConfigError: naming ``where`` (the variable or key); credentials are never quoted.
    """
    problem = url_problem(value)
    if problem is None:
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, TypeError, ValueError):
            problem = "not a valid URL"
        else:
            if url.scheme not in ("http", "https") or not url.host:
                problem = "must be absolute: http:// or https:// and a host"
            elif url.port is not None and not 0 < url.port <= _MAX_PORT:
                problem = f"has port {url.port}: a port is 1 to {_MAX_PORT}"
            elif not _HOST.fullmatch(url.raw_host) and b":" not in url.raw_host:  # IPv6 aside
                problem = "has a host name that cannot be looked up (a space or '%' in it)"
            elif url.userinfo:
                problem = "must not hold credentials (give them to an auth stage)"
            elif url.query or url.fragment:
                problem = "must not have a query or fragment"
            else:
                return url
    shown = "" if "@" in value else f" (got {quoted(value)})"
    raise ConfigError(one_line(f"{where}: {problem}{shown}"))


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One service: where it runs and how it is called.

    Attributes:
        base_url: the URL requests are relative to (default: the first endpoint). Its origin
            is the service's: auth stages bind their credentials to it, and the breaker and
            metrics count per service.
        endpoints: where the service runs (``http://10.0.0.5:8080``); each attempt goes to one
            of them. Empty: the base URL's origin is the only endpoint.
        health_url: a path (``/health``) or a URL on the base URL, probed on every endpoint;
            ``None``: no active health checks.
        health_check: interval, timeout and thresholds of the probes.
        balancer: the balancing policy and the outlier ejection.
        settings: ``HttpSettings`` overrides for this service (``{"timeout_read": 5}``).
        stack: plugin names of its middleware (``None``: the default stack).
        options: options per plugin of ``stack``.
        headers: headers sent with every request.
        api_key_env: the environment variable holding its API key (for ``auth``).
        terminal: the transport's name (``aiohttp``, ``httpx``, ``curl``).
        sources: where each value came from (``{"endpoints": "HTTP_SERVICES__USER__ENDPOINTS"}``),
            named in errors.
    """

    base_url: str | None = None
    endpoints: tuple[str, ...] = ()
    health_url: str | None = None
    health_check: HealthCheck = field(default_factory=HealthCheck)
    balancer: BalancerOptions = field(default_factory=BalancerOptions)
    settings: Mapping[str, Any] = field(default_factory=dict)
    stack: tuple[str, ...] | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    api_key_env: str | None = None
    terminal: str = "aiohttp"
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        owner = "ServiceConfig"
        for name in ("base_url", "health_url", "api_key_env"):
            value = getattr(self, name)
            need(value is None or isinstance(value, str), owner, name, "a string or None", value)
        need(isinstance(self.terminal, str), owner, "terminal", "a terminal's name", self.terminal)
        for name in ("settings", "options", "headers", "sources"):
            value = getattr(self, name)
            need(isinstance(value, Mapping), owner, name, "a mapping", value)
        need(isinstance(self.health_check, HealthCheck), owner, "health_check",
             "a HealthCheck", self.health_check)  # fmt: skip
        need(isinstance(self.balancer, BalancerOptions), owner, "balancer",
             "BalancerOptions", self.balancer)  # fmt: skip
        # a frozen record: the collections are kept as tuples (a list given is fine)
        endpoints = strings_of(owner, "endpoints", self.endpoints, "URLs")
        object.__setattr__(self, "endpoints", endpoints)
        if self.stack is not None:
            object.__setattr__(
                self, "stack", strings_of(owner, "stack", self.stack, "plugin names")
            )

    @property
    def base(self) -> str:
        """The base URL (the first endpoint when none was given)."""
        if self.base_url is not None:
            return self.base_url
        if not self.endpoints:
            raise ConfigError("a service needs a base_url or endpoints")
        return self.endpoints[0]

    def where(self, key: str, service: str) -> str:
        """How an error about ``key`` names it: the variable, else ``service 'x', key``."""
        return self.sources.get(key) or f"service {service!r}, {key}"

    def entry(self) -> dict[str, Any]:
        """This service as a stack file's ``[services.<name>]`` table."""
        entry: dict[str, Any] = {
            "base_url": self.base,
            "endpoints": list(self.endpoints),
            "health_check": self.health_check.model_dump(),
            "balancer": self.balancer.model_dump(),
            "settings": dict(self.settings),
            "options": {k: dict(v) for k, v in self.options.items()},
            "headers": dict(self.headers),
            "terminal": self.terminal,
        }
        if self.health_url is not None:
            entry["health_url"] = self.health_url
        if self.stack is not None:
            entry["stack"] = list(self.stack)
        if self.api_key_env is not None:
            entry["api_key_env"] = self.api_key_env
        return entry

    @classmethod
    def from_entry(
        cls,
        name: str,
        entry: Mapping[str, Any],
        sources: Mapping[str, str] = _EMPTY,
    ) -> ServiceConfig:
        """A config from a stack-file-shaped table (its ``health_check`` and ``balancer``
        tables and ``settings`` checked here, errors naming ``sources`` where known).

        Raises:
            ConfigError: one line naming the variable or key.
        """
        health = _model(HealthCheck, entry.get("health_check") or {}, "health_check", name, sources)
        balancer = _model(BalancerOptions, entry.get("balancer") or {}, "balancer", name, sources)
        settings = dict(entry.get("settings") or {})
        _model(ProviderOverrides, settings, "settings", name, sources)
        stack = entry.get("stack")
        return cls(
            base_url=entry.get("base_url"),
            endpoints=tuple(entry.get("endpoints") or ()),
            health_url=entry.get("health_url"),
            health_check=health,
            balancer=balancer,
            settings=MappingProxyType(settings),
            stack=None if stack is None else tuple(stack),
            options=MappingProxyType(dict(entry.get("options") or {})),
            headers=MappingProxyType(dict(entry.get("headers") or {})),
            api_key_env=entry.get("api_key_env"),
            terminal=entry.get("terminal") or "aiohttp",
            sources=MappingProxyType(dict(sources)),
        )


def _model(
    model: type[_M], values: Mapping[str, Any], table: str, name: str, sources: Mapping[str, str]
) -> _M:
    try:
        return model.model_validate(dict(values))
    except (ValidationError, ConfigError) as raised:  # _Options: the pydantic error is its cause
        exc = raised if isinstance(raised, ValidationError) else raised.__cause__
        if not isinstance(exc, ValidationError):  # pragma: no cover - _Options always sets it
            raise

        def where(key: str) -> str:
            return sources.get(f"{table}.{key}") or f"service {name!r}, {table}.{key}"

        raise ConfigError(_problems(model, exc, where)) from None


def _problems(model: type[BaseModel], exc: ValidationError, where: Callable[[str], str]) -> str:
    """The first five problems of ``exc`` on one line, each after ``where(key)``."""
    problems = []
    for err in exc.errors(include_url=False)[:5]:
        key = ".".join(str(part) for part in err.get("loc", ()))
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = f"unknown key; known: {', '.join(model.model_fields)}"
        elif key not in ("proxy_url",):
            message += f" (got {quoted(err.get('input'))})"
        problems.append(f"{where(key)}: {message}")
    return one_line("; ".join(problems))
