"""``HttpSettings``: every knob, from arguments or ``HTTP_*`` environment variables, validated.

A bad value raises :class:`ConfigError`, one line naming the variable and the rule it broke;
a value that may carry a secret (the proxy URL) is never quoted. Every number has an upper
bound (a day for durations), so nothing absurd reaches a backend.

Explicit values win over defaults: when a rule ties two knobs (``timeout_connect <=
timeout_total``), a default moves to meet a value the caller gave (``HTTP_TIMEOUT_TOTAL=2``
alone clamps the connect and pool timeouts to 2 s); only two given values that contradict
each other are an error.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ._errors import ConfigError

__all__ = ["DEFAULT_RETRY_STATUSES", "HttpSettings", "ProviderOverrides"]

ENV_PREFIX = "HTTP_"
DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})

# Upper bounds (docs/settings.md): a day for any duration, 100,000 connections, a million for
# counters and rates. Beyond them a value is a typo or an attack, and some backends overflow.
DAY = 86_400.0
MAX_CONNECTIONS = 100_000
MAX_COUNT = 1_000_000
MAX_BODY_LIMIT = 2**40  # 1 TiB: a response body cap beyond it is no cap
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024

PositiveSeconds = Annotated[float, Field(gt=0, le=DAY, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, le=DAY, allow_inf_nan=False)]
Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
PositiveRatio = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
PerSecond = Annotated[float, Field(ge=0, le=MAX_COUNT, allow_inf_nan=False)]
Retries = Annotated[int, Field(ge=0, le=100)]
RedirectHops = Annotated[int, Field(ge=0, le=100)]
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Probes = Annotated[int, Field(ge=1, le=10_000)]
Connections = Annotated[int, Field(ge=1, le=MAX_CONNECTIONS)]
IdleConnections = Annotated[int, Field(ge=0, le=MAX_CONNECTIONS)]
StatusSet = Annotated[frozenset[int], NoDecode]
ProxyURL = Annotated[str, Field(max_length=2048)]
TerminalName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def _existing_file(value: Path) -> Path:
    try:
        found = value.is_file()
    except (OSError, ValueError):  # a name too long, a NUL in it
        found = False
    if not found:
        raise ValueError("not an existing file")
    return value


PemFile = Annotated[Path, AfterValidator(_existing_file)]
BodyBytes = Annotated[int, Field(ge=1, le=MAX_BODY_LIMIT)]

# The idle connections an httpx pool keeps when ``max_keepalive`` was not set: httpx's default.
HTTPX_KEEPALIVE = 20

# Rules ``low <= high`` (``low`` may be None: no rule then).
ORDER_RULES = (
    ("timeout_connect", "timeout_total"),
    ("timeout_pool", "timeout_total"),
    ("timeout_attempt", "timeout_total"),
    ("backoff_base", "backoff_max"),
    ("max_keepalive", "max_connections"),
    ("circuit_breaker_cooldown", "circuit_breaker_cooldown_max"),
)
# TLS and proxy fields: never read from the environment of a CGI request (see _CgiSafeEnv).
TLS_PROXY_FIELDS = frozenset(
    {"verify", "ca_bundle", "client_cert", "client_key", "proxy_url", "trust_env"}
)
# Fields whose value is never quoted in an error (a proxy URL may hold a password).
_UNQUOTED = frozenset({"proxy_url"})
PROXY_SCHEMES = frozenset({"http", "https", "socks5", "socks5h"})
_QUOTE_LIMIT = 60


_SIZE_UNITS = {"": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}


def _parse_size(value: Any) -> Any:
    """``"100MiB"``, ``"65536"`` or ``"none"`` (no limit) from a variable; other values as given."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower().replace(" ", "")
    if text in ("none", "unlimited"):
        return None
    digits = text.rstrip("kmgib")
    unit = _SIZE_UNITS.get(text[len(digits) :])
    if not digits.isdigit() or unit is None:
        raise ValueError("expected a number of bytes (65536, 64KiB, 100MiB) or 'none'")
    return int(digits) * unit


def _parse_size_override(value: Any) -> Any:
    """As :func:`_parse_size`; a provider cannot lift the limit (``None`` means "inherit")."""
    parsed = _parse_size(value)
    if parsed is None and value is not None:
        raise ValueError("a provider cannot lift the limit: give a number of bytes")
    return parsed


def _parse_statuses(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            return frozenset(int(p) for p in parts)
        except ValueError:
            raise ValueError("expected comma-separated status codes") from None
    return value


def _check_statuses(value: frozenset[int] | None) -> frozenset[int] | None:
    bad = sorted(code for code in value or () if not 100 <= code <= 599)
    if bad:
        raise ValueError(f"status codes must be within 100..599, got {bad[:5]}")
    return value


def _empty_is_unset(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def check_proxy_url(value: str | None) -> str | None:
    """A proxy URL: ``scheme://[user:password@]host[:port]``; the message never quotes it."""
    if value is None:
        return None
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in value):
        raise ValueError("a proxy URL holds no spaces or control characters")
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ValueError("not a valid URL") from None
    if url.scheme not in PROXY_SCHEMES:
        raise ValueError("a proxy URL starts with http://, https://, socks5:// or socks5h://")
    if not url.host:
        raise ValueError("a proxy URL names a host (scheme://host:port)")
    return value


class _Parsed(BaseModel):
    """The parsing and checks the settings and the per-provider overrides share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    _unset_if_empty = field_validator(
        "ca_bundle", "client_cert", "client_key", "proxy_url", mode="before", check_fields=False
    )(_empty_is_unset)
    _valid_proxy = field_validator("proxy_url", check_fields=False)(check_proxy_url)
    _split_statuses = field_validator("retry_statuses", mode="before", check_fields=False)(
        _parse_statuses
    )
    _valid_statuses = field_validator("retry_statuses", check_fields=False)(_check_statuses)


class _Knobs(_Parsed):
    """The tunable fields, shared by the settings and the per-provider overrides."""

    timeout_connect: PositiveSeconds = 5.0
    timeout_read: PositiveSeconds = 30.0
    timeout_write: PositiveSeconds = 30.0
    timeout_pool: PositiveSeconds = 5.0
    timeout_total: PositiveSeconds = 60.0
    timeout_attempt: PositiveSeconds | None = None
    max_retries: Retries = 3
    backoff_base: PositiveSeconds = 1.0
    backoff_max: PositiveSeconds = 20.0
    retry_after_max: PositiveSeconds = 60.0
    retry_statuses: StatusSet = DEFAULT_RETRY_STATUSES
    retry_budget: bool = True
    retry_budget_ratio: Ratio = 0.2
    retry_budget_min_per_second: PerSecond = 10.0
    retry_budget_window: PositiveSeconds = 10.0
    circuit_breaker_threshold: Count = 5
    circuit_breaker_cooldown: PositiveSeconds = 30.0
    circuit_breaker_cooldown_max: PositiveSeconds = 300.0
    circuit_breaker_failure_ratio: PositiveRatio | None = None
    circuit_breaker_window: PositiveSeconds = 30.0
    circuit_breaker_min_throughput: Count = 100
    circuit_breaker_slow_call: PositiveSeconds | None = None
    circuit_breaker_half_open_probes: Probes = 1
    max_connections: Connections = 100
    max_keepalive: IdleConnections = 100  # as many as may be in flight: no churn at full load
    keepalive_expiry: Seconds = 30.0
    # None: each terminal's own choice (aiohttp HTTP/1.1; httpx and curl offer HTTP/2 by ALPN);
    # True: HTTP/2 wanted (the default client picks HttpxTerminal; aiohttp refuses: ConfigError).
    http2: bool | None = None
    # The terminal of clients given none, by its entry-point name ("aiohttp", "httpx", "curl",
    # "reqwest" with httprail[reqwest], or a plugin's); None: aiohttp (httpx when http2).
    terminal: TerminalName | None = None
    max_body_bytes: BodyBytes | None = DEFAULT_MAX_BODY_BYTES
    verify: bool = True
    ca_bundle: PemFile | None = None
    client_cert: PemFile | None = None
    client_key: PemFile | None = None
    proxy_url: ProxyURL | None = Field(default=None, repr=False)
    trust_env: bool = True
    follow_redirects: bool = False
    max_redirects: RedirectHops = 20
    # Shared state (the httprail-redis plugin): the server of stages given store = "redis" in
    # a stack file, and how long one Redis operation may take before a stage decides locally.
    redis_url: str | None = Field(default=None, repr=False)
    redis_timeout: PositiveSeconds = 0.005

    _parse_body_bytes = field_validator("max_body_bytes", mode="before")(_parse_size)


_KNOB_FIELDS = tuple(_Knobs.model_fields)


class ProviderOverrides(_Parsed):
    """Per-provider values that replace the global ones (every field optional)."""

    timeout_connect: PositiveSeconds | None = None
    timeout_read: PositiveSeconds | None = None
    timeout_write: PositiveSeconds | None = None
    timeout_pool: PositiveSeconds | None = None
    timeout_total: PositiveSeconds | None = None
    timeout_attempt: PositiveSeconds | None = None
    max_retries: Retries | None = None
    backoff_base: PositiveSeconds | None = None
    backoff_max: PositiveSeconds | None = None
    retry_after_max: PositiveSeconds | None = None
    retry_statuses: StatusSet | None = None
    retry_budget: bool | None = None
    retry_budget_ratio: Ratio | None = None
    retry_budget_min_per_second: PerSecond | None = None
    retry_budget_window: PositiveSeconds | None = None
    circuit_breaker_threshold: Count | None = None
    circuit_breaker_cooldown: PositiveSeconds | None = None
    circuit_breaker_cooldown_max: PositiveSeconds | None = None
    circuit_breaker_failure_ratio: PositiveRatio | None = None
    circuit_breaker_window: PositiveSeconds | None = None
    circuit_breaker_min_throughput: Count | None = None
    circuit_breaker_slow_call: PositiveSeconds | None = None
    circuit_breaker_half_open_probes: Probes | None = None
    max_connections: Connections | None = None
    max_keepalive: IdleConnections | None = None
    keepalive_expiry: Seconds | None = None
    http2: bool | None = None
    terminal: TerminalName | None = None
    max_body_bytes: BodyBytes | None = None
    verify: bool | None = None
    ca_bundle: PemFile | None = None
    client_cert: PemFile | None = None
    client_key: PemFile | None = None
    proxy_url: ProxyURL | None = Field(default=None, repr=False)
    trust_env: bool | None = None
    follow_redirects: bool | None = None
    max_redirects: RedirectHops | None = None
    redis_url: str | None = Field(default=None, repr=False)
    redis_timeout: PositiveSeconds | None = None

    _parse_body_bytes = field_validator("max_body_bytes", mode="before")(_parse_size_override)


def reconcile(values: dict[str, Any], explicit: Collection[str], prefix: str = ENV_PREFIX) -> None:
    """Settle every ``low <= high`` rule in ``values``, in place.

    A value not in ``explicit`` moves to meet one that is (an unset connect timeout is clamped
    to a given total; an unset total is raised to a given connect timeout, so the given value
    holds); two explicit values that contradict raise ``ValueError`` naming both variables.
    """
    broken = []
    for low, high in ORDER_RULES:
        below, above = values[low], values[high]
        if below is None or below <= above:
            continue
        if low in explicit and high in explicit:
            broken.append(
                f"{prefix}{low.upper()} ({below}) must be <= {prefix}{high.upper()} ({above})"
            )
        elif low in explicit:
            values[high] = below
        else:
            values[low] = above
    if broken:
        raise ValueError("; ".join(broken))


def _check_tls(values: Any, prefix: str = ENV_PREFIX) -> None:
    if values.client_key is not None and values.client_cert is None:
        raise ValueError(f"{prefix}CLIENT_KEY is set without {prefix}CLIENT_CERT")
    if not values.verify and values.ca_bundle is not None:
        raise ValueError(
            f"{prefix}CA_BUNDLE is set but {prefix}VERIFY is false (nothing would be verified); "
            "unset one of them"
        )


def _variable(loc: tuple[int | str, ...]) -> str:
    path = "__".join(str(part).upper() for part in loc)
    return f"{ENV_PREFIX}{path}"


def quoted(value: Any) -> str:
    """``repr(value)``, cut to :data:`_QUOTE_LIMIT` characters, for an error message."""
    try:
        text = repr(value)
    except RecursionError:  # pragma: no cover - depth is checked before anything is quoted
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


_SERVICE_KEYS = frozenset({"base_url", "endpoints", "health_url"})


def _config_error(exc: ValidationError, source: str = "") -> ConfigError:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        service_key = len(loc) == 3 and loc[0] == "providers" and loc[2] in _SERVICE_KEYS
        if err.get("type") == "extra_forbidden":
            message = "unknown setting"
            if service_key:  # HTTP_PROVIDERS__USER__BASE_URL: meant for a service
                name, key = str(loc[1]).upper(), str(loc[2]).upper()
                message += f"; a service's URLs go in HTTP_SERVICES__{name}__{key}"
        if not loc:
            problems.append(message)
            continue
        detail = f"{_variable(loc)} ({'.'.join(map(str, loc))}): {message}"
        got = err.get("input")
        if (
            not isinstance(got, dict)
            and not service_key
            and not _UNQUOTED.intersection(map(str, loc))
        ):
            detail += f" (got {quoted(got)})"
        problems.append(detail)
    return ConfigError(one_line(f"invalid settings{source}: " + "; ".join(problems)))


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space."""
    return " ".join(text.split())


class _CgiSafeEnv(PydanticBaseSettingsSource):
    """The environment, minus the TLS and proxy variables when running as a CGI script.

    A CGI server turns every request header into an ``HTTP_*`` variable: a client sending
    ``Proxy-Url:`` or ``Verify:`` would set ``HTTP_PROXY_URL`` or ``HTTP_VERIFY`` (the
    "httpoxy" flaw, which made Python's urllib ignore ``HTTP_PROXY`` under CGI too). When
    ``REQUEST_METHOD`` is set, those variables are not read; arguments still apply.
    """

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self._inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)  # pragma: no cover - unused

    def __call__(self) -> dict[str, Any]:
        values = self._inner()
        if "REQUEST_METHOD" not in os.environ:
            return values
        kept = {k: v for k, v in values.items() if k not in TLS_PROXY_FIELDS}
        providers = kept.get("providers")
        if isinstance(providers, dict):
            kept["providers"] = {
                name: {k: v for k, v in own.items() if k not in TLS_PROXY_FIELDS}
                if isinstance(own, dict)
                else own
                for name, own in providers.items()
            }
        return kept


class HttpSettings(_Knobs, BaseSettings):
    """Timeouts, retry, breaker, pool, TLS and proxy settings; environment variables use the
    ``HTTP_`` prefix.

    Field names are the variable names without the prefix, lower-case:
    ``HttpSettings(timeout_total=4, max_retries=2)`` or ``HTTP_TIMEOUT_TOTAL=4``.
    Per-provider overrides: ``HTTP_PROVIDERS__DEEPSEEK__TIMEOUT_READ=90``.

    Raises:
        ConfigError: a value breaks its rule (negative timeout, a connect timeout given larger
            than a total given, unreadable JSON, ...), in one line naming the variable.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    providers: dict[str, ProviderOverrides] = Field(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(exc) from None
        except SettingsError as exc:  # a variable that should hold JSON does not
            raise ConfigError(one_line(f"invalid settings: {_settings_error(exc)}")) from None
        except RecursionError:
            raise ConfigError(
                "invalid settings: a variable holds JSON nested too deeply to read"
            ) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _CgiSafeEnv(env_settings)

    @field_validator("providers", mode="before")
    @classmethod
    def _lower_provider_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).lower(): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check_order(self) -> HttpSettings:
        values = {field: getattr(self, field) for rule in ORDER_RULES for field in rule}
        reconcile(values, self.model_fields_set)
        for field, value in values.items():
            if value != getattr(self, field):
                self.__dict__[field] = value  # frozen: set once, while validating
        _check_tls(self)
        return self

    def for_provider(self, name: str) -> HttpSettings:
        """These settings with ``name``'s overrides applied (unchanged if it has none).

        The provider's values are the explicit ones: the global values they contradict move
        to meet them (see :func:`reconcile`); two provider values that contradict are an error.
        """
        overrides = self.providers.get(name.lower())
        if overrides is None:
            return self
        values = {f: getattr(self, f) for f in _KNOB_FIELDS}
        given = overrides.model_dump(exclude_none=True)
        values.update(given)
        where = f" for provider {name!r}"
        try:
            reconcile(values, given)
            return type(self).model_validate({**values, "providers": self.providers})
        except ConfigError as exc:  # model_validate goes through __init__
            detail = str(exc).removeprefix("invalid settings: ")
            raise ConfigError(f"invalid settings{where}: {detail}") from None
        except ValueError as exc:
            raise ConfigError(one_line(f"invalid settings{where}: {exc}")) from None

    def httpx_timeout(self) -> httpx.Timeout:
        """The per-phase timeouts as an ``httpx.Timeout``."""
        return httpx.Timeout(
            connect=self.timeout_connect,
            read=self.timeout_read,
            write=self.timeout_write,
            pool=self.timeout_pool,
        )

    def httpx_limits(self) -> httpx.Limits:
        """The pool limits as ``httpx.Limits``.

        ``max_keepalive`` left at its default is httpx's own 20 here (or the pool size, if
        smaller): httpcore's pool slows down as it keeps more connections (64 requests in flight
        on loopback: ~70 rps with all 64 kept against ~260-350 rps with 20, raw httpx alike;
        ``docs/decisions.md``). A value that was set is used as it is.
        """
        keepalive = self.max_keepalive
        if "max_keepalive" not in self.model_fields_set:
            keepalive = min(keepalive, HTTPX_KEEPALIVE)
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=keepalive,
            keepalive_expiry=self.keepalive_expiry,
        )

    @property
    def tls_or_proxy_set(self) -> tuple[str, ...]:
        """The TLS and proxy fields whose value is not the default (for terminals that cannot
        apply them to a client they were handed)."""
        return tuple(
            sorted(
                field
                for field in TLS_PROXY_FIELDS
                if getattr(self, field) != type(self).model_fields[field].default
            )
        )


def _settings_error(exc: SettingsError) -> str:
    """pydantic-settings says 'error parsing value for field "providers" from source ...'."""
    text = str(exc)
    start = text.find('field "')
    if start < 0:  # pragma: no cover - every SettingsError names its field today
        return "a variable could not be read"
    field = text[start + 7 :].partition('"')[0]
    return f"{ENV_PREFIX}{field.upper()}: not valid JSON"
