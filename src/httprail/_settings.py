"""``HttpSettings``: every knob, from arguments or ``HTTP_*`` environment variables, validated.

A bad value raises :class:`ConfigError` naming the variable and the rule it broke.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ._errors import ConfigError

__all__ = ["DEFAULT_RETRY_STATUSES", "HttpSettings", "ProviderOverrides"]

ENV_PREFIX = "HTTP_"
DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
PositiveRatio = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
StatusSet = Annotated[frozenset[int], NoDecode]


def _parse_statuses(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            return frozenset(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"expected comma-separated status codes, got {value!r}") from None
    return value


def _check_statuses(value: frozenset[int]) -> frozenset[int]:
    bad = sorted(code for code in value if not 100 <= code <= 599)
    if bad:
        raise ValueError(f"status codes must be within 100..599, got {bad}")
    return value


class _Knobs(BaseModel):
    """The tunable fields, shared by the settings and the per-provider overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_connect: PositiveSeconds = 5.0
    timeout_read: PositiveSeconds = 30.0
    timeout_write: PositiveSeconds = 30.0
    timeout_pool: PositiveSeconds = 5.0
    timeout_total: PositiveSeconds = 60.0
    timeout_attempt: PositiveSeconds | None = None
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    backoff_base: PositiveSeconds = 1.0
    backoff_max: PositiveSeconds = 20.0
    retry_after_max: PositiveSeconds = 60.0
    retry_statuses: StatusSet = DEFAULT_RETRY_STATUSES
    retry_budget: bool = True
    retry_budget_ratio: Ratio = 0.2
    retry_budget_min_per_second: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 10.0
    retry_budget_window: PositiveSeconds = 10.0
    circuit_breaker_threshold: Annotated[int, Field(ge=1)] = 5
    circuit_breaker_cooldown: PositiveSeconds = 30.0
    circuit_breaker_cooldown_max: PositiveSeconds = 300.0
    circuit_breaker_failure_ratio: PositiveRatio | None = None
    circuit_breaker_window: PositiveSeconds = 30.0
    circuit_breaker_min_throughput: Annotated[int, Field(ge=1)] = 100
    circuit_breaker_slow_call: PositiveSeconds | None = None
    circuit_breaker_half_open_probes: Annotated[int, Field(ge=1)] = 1
    max_connections: Annotated[int, Field(ge=1)] = 100
    max_keepalive: Annotated[int, Field(ge=0)] = 20
    keepalive_expiry: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 30.0
    http2: bool = True


_KNOB_FIELDS = tuple(_Knobs.model_fields)


class ProviderOverrides(BaseModel):
    """Per-provider values that replace the global ones (every field optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_connect: PositiveSeconds | None = None
    timeout_read: PositiveSeconds | None = None
    timeout_write: PositiveSeconds | None = None
    timeout_pool: PositiveSeconds | None = None
    timeout_total: PositiveSeconds | None = None
    timeout_attempt: PositiveSeconds | None = None
    max_retries: Annotated[int, Field(ge=0, le=100)] | None = None
    backoff_base: PositiveSeconds | None = None
    backoff_max: PositiveSeconds | None = None
    retry_after_max: PositiveSeconds | None = None
    retry_statuses: StatusSet | None = None
    retry_budget: bool | None = None
    retry_budget_ratio: Ratio | None = None
    retry_budget_min_per_second: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    retry_budget_window: PositiveSeconds | None = None
    circuit_breaker_threshold: Annotated[int, Field(ge=1)] | None = None
    circuit_breaker_cooldown: PositiveSeconds | None = None
    circuit_breaker_cooldown_max: PositiveSeconds | None = None
    circuit_breaker_failure_ratio: PositiveRatio | None = None
    circuit_breaker_window: PositiveSeconds | None = None
    circuit_breaker_min_throughput: Annotated[int, Field(ge=1)] | None = None
    circuit_breaker_slow_call: PositiveSeconds | None = None
    circuit_breaker_half_open_probes: Annotated[int, Field(ge=1)] | None = None
    max_connections: Annotated[int, Field(ge=1)] | None = None
    max_keepalive: Annotated[int, Field(ge=0)] | None = None
    keepalive_expiry: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    http2: bool | None = None

    _split_statuses = field_validator("retry_statuses", mode="before")(_parse_statuses)
    _valid_statuses = field_validator("retry_statuses")(
        lambda v: None if v is None else _check_statuses(v)
    )


def _variable(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "HttpSettings"
    path = "__".join(str(part).upper() for part in loc)
    return f"{ENV_PREFIX}{path}"


def _config_error(exc: ValidationError, source: str = "") -> ConfigError:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        got = err.get("input")
        field_name = ".".join(str(p) for p in loc) or "settings"
        detail = f"{_variable(loc)} ({field_name}): {message}"
        if loc and not isinstance(got, dict):
            detail += f" (got {got!r})"
        problems.append(detail)
    prefix = f"invalid settings{source}: "
    return ConfigError(prefix + "; ".join(problems))


class HttpSettings(_Knobs, BaseSettings):
    """Timeouts, retry, breaker and pool settings; environment variables use the ``HTTP_`` prefix.

    Field names are the variable names without the prefix, lower-case:
    ``HttpSettings(timeout_total=4, max_retries=2)`` or ``HTTP_TIMEOUT_TOTAL=4``.
    Per-provider overrides: ``HTTP_PROVIDERS__DEEPSEEK__TIMEOUT_READ=90``.

    Raises:
        ConfigError: a value is missing its rule (negative timeout, connect > total, ...).
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

    _split_statuses = field_validator("retry_statuses", mode="before")(_parse_statuses)
    _valid_statuses = field_validator("retry_statuses")(_check_statuses)

    @field_validator("providers", mode="before")
    @classmethod
    def _lower_provider_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).lower(): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check_order(self) -> HttpSettings:
        rules = [
            ("timeout_connect", "timeout_total"),
            ("timeout_pool", "timeout_total"),
            ("backoff_base", "backoff_max"),
            ("max_keepalive", "max_connections"),
            ("circuit_breaker_cooldown", "circuit_breaker_cooldown_max"),
        ]
        if self.timeout_attempt is not None:
            rules.append(("timeout_attempt", "timeout_total"))
        broken = [
            f"{ENV_PREFIX}{low.upper()} ({getattr(self, low)}) must be <= "
            f"{ENV_PREFIX}{high.upper()} ({getattr(self, high)})"
            for low, high in rules
            if getattr(self, low) > getattr(self, high)
        ]
        if broken:
            raise ValueError("; ".join(broken))
        return self

    def for_provider(self, name: str) -> HttpSettings:
        """These settings with ``name``'s overrides applied (unchanged if it has none)."""
        overrides = self.providers.get(name.lower())
        if overrides is None:
            return self
        values = {f: getattr(self, f) for f in _KNOB_FIELDS}
        values.update(overrides.model_dump(exclude_none=True))
        try:
            return type(self).model_validate({**values, "providers": self.providers})
        except ValidationError as exc:
            raise _config_error(exc, f" for provider {name!r}") from None
        except ConfigError as exc:
            detail = str(exc).removeprefix("invalid settings: ")
            raise ConfigError(f"invalid settings for provider {name!r}: {detail}") from None

    def httpx_timeout(self) -> httpx.Timeout:
        """The per-phase timeouts as an ``httpx.Timeout``."""
        return httpx.Timeout(
            connect=self.timeout_connect,
            read=self.timeout_read,
            write=self.timeout_write,
            pool=self.timeout_pool,
        )

    def httpx_limits(self) -> httpx.Limits:
        """The pool limits as ``httpx.Limits``."""
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive,
            keepalive_expiry=self.keepalive_expiry,
        )
