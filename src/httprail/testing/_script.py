"""Chaos scripts: a :class:`ChaosServer`'s replies per path, declared in a TOML file.

The format (every table and key is checked; unknown keys are errors)::

    [paths."/flaky"]                 # 20% 503s, seeded
    random = { fail_ratio = 0.2, fail = { status = 503 }, seed = 7 }

    [paths."/limited"]               # 20 requests/s, then 429 + Retry-After
    rate_limited = { rate = 20, retry_after = "1" }

    [paths."/sequence"]              # replies in order; the last one repeats
    replies = [ { status = 503, retry_after = "1" }, { status = 200, json = { ok = true } } ]
    repeat_last = true

    [paths."/slow"]
    replies = [ { status = 200, delay = 0.5 } ]

    [paths."/reset"]
    replies = [ { fault = "reset" } ]

A path has exactly one of ``replies``, ``random`` or ``rate_limited``. A reply has ``status``
(200), ``headers``, one of ``json`` / ``body`` / ``events`` (an SSE stream, with
``event_delay`` and ``drop_after_events``), ``delay`` (seconds), ``retry_after``,
``retry_after_ms``; or ``fault`` (one of :class:`Fault`'s values, with an optional ``delay``).

Example:
    >>> script = load_chaos_script("chaos.toml")                       # doctest: +SKIP
    >>> with ChaosServer() as server:                                   # doctest: +SKIP
    ...     script.apply(server)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .._errors import ConfigError
from .._stack_file import read_toml
from ._chaos import ChaosServer, Fault, Reply

__all__ = ["ChaosScript", "load_chaos_script"]


def _text(value: Any) -> Any:
    """Numbers are accepted where a header value is expected (``retry_after = 1``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, "g") if isinstance(value, float) else str(value)
    return value


Seconds = Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)]
HeaderText = Annotated[str, BeforeValidator(_text)]
_ANSWER_FIELDS = ("status", "headers", "json", "body", "events", "retry_after", "retry_after_ms")


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = Field(default=200, ge=100, le=599)
    headers: dict[str, HeaderText] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    body: str | None = None
    events: list[str] | None = None
    event_delay: Seconds = 0.0
    drop_after_events: int | None = Field(default=None, ge=0)
    delay: Seconds = 0.0
    retry_after: HeaderText | None = None
    retry_after_ms: HeaderText | None = None
    fault: Fault | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = self.model_fields_set
        bodies = [name for name in ("json_", "body", "events") if name in given]
        if len(bodies) > 1:
            names = " and ".join(name.rstrip("_") for name in bodies)
            raise ValueError(f"give one of json, body or events, not {names}")
        if self.fault is not None:
            extra = [n for n in _ANSWER_FIELDS if n in given or f"{n}_" in given]
            if extra:
                raise ValueError(
                    f"a fault replaces the answer: drop {', '.join(extra)} (only delay may stay)"
                )
        if self.events is None and ("event_delay" in given or "drop_after_events" in given):
            raise ValueError("event_delay and drop_after_events need events")
        return self

    def build(self) -> Reply:
        if self.fault is not None:
            return Reply(fault=self.fault, delay=self.delay)
        headers: dict[str, str] = {}
        body = b""
        if "json_" in self.model_fields_set:
            headers["content-type"] = "application/json"
            body = json.dumps(self.json_, separators=(",", ":")).encode()
        elif self.body is not None:
            headers["content-type"] = "text/plain; charset=utf-8"
            body = self.body.encode()
        elif self.events is not None:
            headers.update({"content-type": "text/event-stream", "cache-control": "no-cache"})
        headers.update(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = self.retry_after_ms
        return Reply(
            status_code=self.status,
            headers=tuple(headers.items()),
            body=body,
            delay=self.delay,
            events=None if self.events is None else tuple(self.events),
            event_delay=self.event_delay,
            drop_after_events=self.drop_after_events,
        )


class _Random(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_ratio: float = Field(ge=0, le=1, allow_inf_nan=False)
    ok: _Reply | None = None
    fail: _Reply | None = None
    seed: int = 0


class _RateLimited(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(gt=0, allow_inf_nan=False)
    burst: float | None = Field(default=None, ge=1, allow_inf_nan=False)
    ok: _Reply | None = None
    retry_after: HeaderText | None = "1"


class _Path(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    replies: list[_Reply] | None = Field(default=None, min_length=1)
    repeat_last: bool = True
    random: _Random | None = None
    rate_limited: _RateLimited | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = [name for name in ("replies", "random", "rate_limited") if getattr(self, name)]
        if len(kinds) != 1:
            found = " and ".join(kinds) if kinds else "none"
            raise ValueError(f"give exactly one of replies, random or rate_limited (found {found})")
        if "repeat_last" in self.model_fields_set and self.replies is None:
            raise ValueError("repeat_last goes with replies")
        return self

    def apply(self, server: ChaosServer, path: str) -> None:
        if self.replies is not None:
            replies = [reply.build() for reply in self.replies]
            server.script(path, *replies, repeat_last=self.repeat_last)
        elif self.random is not None:
            spec = self.random
            server.script_random(
                path,
                ok=spec.ok.build() if spec.ok else None,
                fail=spec.fail.build() if spec.fail else None,
                fail_ratio=spec.fail_ratio,
                seed=spec.seed,
            )
        elif self.rate_limited is not None:
            limited = self.rate_limited
            server.script_rate_limited(
                path,
                rate=limited.rate,
                burst=limited.burst,
                ok=limited.ok.build() if limited.ok else None,
                retry_after=limited.retry_after,
            )


class ChaosScript(BaseModel):
    """A validated chaos script: how a :class:`ChaosServer` answers, per path.

    Build it with :func:`load_chaos_script` (a TOML file) or :meth:`from_mapping`; install it
    on a server with :meth:`apply`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: dict[str, _Path] = Field(default_factory=dict)

    @field_validator("paths")
    @classmethod
    def _absolute_paths(cls, value: dict[str, _Path]) -> dict[str, _Path]:
        for path in value:
            if not path.startswith("/") or "?" in path or "#" in path:
                raise ValueError(f"path {path!r} must start with '/' and have no query")
        return value

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> ChaosScript:
        """Validate a mapping shaped like a chaos script.

        Raises:
            ConfigError: one line naming ``source``, the path and the field of each problem.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a chaos script must be a table, got {data!r}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from None

    def apply(self, server: ChaosServer) -> None:
        """Script every path of this script on ``server`` (replacing their earlier scripts)."""
        for path, spec in self.paths.items():
            spec.apply(server, path)


def load_chaos_script(path: str | os.PathLike[str]) -> ChaosScript:
    """Read and validate a chaos script (TOML).

    Raises:
        ConfigError: the file is missing, is not TOML, or breaks the format; the message names
            the file, the path and the field.
    """
    file = Path(path)
    data = read_toml(file, "the chaos script")
    return ChaosScript.from_mapping(data, source=str(file))


def _describe(exc: ValidationError, source: str) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err.get("loc", ())]
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}" if loc else "unknown key"
            loc = loc[:-1]
        elif "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {_shown(err['input'])})"
        where = ""
        if len(loc) >= 2 and loc[0] == "paths":
            where = f"path {loc[1]!r}"
            if loc[2:]:
                where += f", {_dotted(loc[2:])}"
        elif loc:
            where = _dotted(loc)
        problems.append(f"{where}: {message}" if where else message)
    return f"{source}: " + "; ".join(problems)


def _dotted(loc: list[str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text


def _shown(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
