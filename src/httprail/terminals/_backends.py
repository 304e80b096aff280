"""The backends of a :class:`MultiTerminal`: how they are given, named and aimed, and the
snapshot of their health."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import httpx

from .._args import need
from .._errors import ConfigError, RequestError
from .._pipeline import TerminalPlugin
from .._redact import redact_url
from .._validate import as_origin

__all__ = [
    "Backend",
    "BackendHealth",
    "BackendSpec",
    "BackendState",
    "Slot",
    "moved_to",
    "parse_backends",
]

BackendState = Literal["healthy", "unhealthy", "trial"]
"""``healthy``: in use; ``unhealthy``: cooling down, skipped; ``trial``: cooldown over, the
next request tries it (or one is trying it now)."""


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend of a :class:`MultiTerminal`.

    Args:
        terminal: what sends the requests (several backends may share one terminal).
        origin: ``scheme://host[:port]`` the request's origin is replaced with (path and query
            are kept); ``None`` sends the request to its own URL.
        name: the name in :meth:`MultiTerminal.health` (default: the origin, else the
            terminal's name).
    """

    terminal: TerminalPlugin
    origin: str | httpx.URL | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        need(self.name is None or isinstance(self.name, str), "Backend", "name",
             "a string or None", self.name)  # fmt: skip


BackendSpec: TypeAlias = Backend | TerminalPlugin | tuple[TerminalPlugin, "str | httpx.URL"]
"""A backend, a bare terminal, or a ``(terminal, origin)`` pair."""


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """A snapshot of one backend's health.

    Attributes:
        name: the backend's name.
        origin: the origin requests are sent to, or ``None`` (the request's own).
        state: ``healthy``, ``unhealthy`` (skipped) or ``trial`` (cooldown over).
        consecutive_failures: transport failures since the last response.
        requests: requests sent to it.
        failures: transport failures in total.
        last_failure_at: clock value of the last transport failure, or ``None``.
        retry_in: seconds until an unhealthy backend gets its trial (``0.0`` otherwise).
        last_error: the last transport failure, or ``None``.
    """

    name: str
    origin: str | None
    state: BackendState
    consecutive_failures: int
    requests: int
    failures: int
    last_failure_at: float | None
    retry_in: float
    last_error: RequestError | None

    @property
    def healthy(self) -> bool:
        """Whether the backend is in use (not cooling down, not on trial)."""
        return self.state == "healthy"


class Slot:
    """A backend and its mutable health (changed without awaiting, so safe across tasks)."""

    __slots__ = (
        "down_since",
        "failures",
        "host",
        "last_error",
        "last_failure_at",
        "name",
        "origin",
        "port",
        "requests",
        "scheme",
        "streak",
        "terminal",
        "trial",
    )

    def __init__(self, terminal: TerminalPlugin, origin: httpx.URL | None, name: str) -> None:
        self.terminal = terminal
        self.name = name
        self.origin = None if origin is None else str(origin).rstrip("/")
        self.scheme = origin.scheme if origin is not None else ""
        self.host = origin.host if origin is not None else ""
        self.port = origin.port if origin is not None else None
        self.streak = self.requests = self.failures = 0
        self.down_since: float | None = None
        self.trial = False
        self.last_failure_at: float | None = None
        self.last_error: RequestError | None = None

    def target(self, request: httpx.Request) -> httpx.Request:
        """``request`` aimed at this backend's origin (the same object if it has none)."""
        url = request.url
        if self.origin is None or (url.scheme, url.host, url.port) == (
            self.scheme,
            self.host,
            self.port,
        ):
            return request
        return moved_to(request, url.copy_with(scheme=self.scheme, host=self.host, port=self.port))


def moved_to(request: httpx.Request, url: httpx.URL) -> httpx.Request:
    """A copy of ``request`` sent to ``url`` (another origin): its headers with ``Host`` to
    match, its body and its extensions (the context travels with it)."""
    headers = request.headers.copy()
    headers["Host"] = url.netloc.decode("ascii")
    aimed = httpx.Request(
        request.method,
        url,
        headers=headers,
        stream=request.stream,
        extensions=dict(request.extensions),
    )
    if isinstance(request.stream, httpx.ByteStream):
        aimed.read()  # a body in memory stays readable as ``.content``
    return aimed


def parse_backends(backends: Sequence[BackendSpec]) -> tuple[Slot, ...]:
    if isinstance(backends, str | bytes) or not isinstance(backends, Sequence) or not backends:
        raise ConfigError(
            f"MultiTerminal(backends=...) must be a non-empty list of terminals, "
            f"(terminal, origin) pairs or Backend values, got {backends!r}"
        )
    parsed: list[tuple[TerminalPlugin, httpx.URL | None, str | None]] = []
    for index, spec in enumerate(backends):
        where = f"MultiTerminal(backends=...)[{index}]"
        if isinstance(spec, Backend):
            terminal, origin, name = spec.terminal, spec.origin, spec.name
        elif isinstance(spec, tuple) and len(spec) == 2:
            (terminal, origin), name = spec, None
        else:
            terminal, origin, name = spec, None, None
        if not isinstance(terminal, TerminalPlugin):
            raise ConfigError(
                f"{where} must be a terminal (a str `name`, async `send` and `aclose`), "
                f"a (terminal, origin) pair or a Backend, got {terminal!r}"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"{where}: name must be a non-empty str, got {name!r}")
        parsed.append((terminal, _origin(origin, where), name))
    defaults = [
        name or (str(origin).rstrip("/") if origin is not None else terminal.name)
        for terminal, origin, name in parsed
    ]
    names = [
        base if given is not None or defaults.count(base) == 1 else f"{base}#{index}"
        for index, (base, (_, _, given)) in enumerate(zip(defaults, parsed, strict=True))
    ]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise ConfigError(
                f"MultiTerminal(backends=...)[{index}]: backend name {name!r} is already used; "
                "names must be unique"
            )
    return tuple(
        Slot(terminal, origin, name)
        for (terminal, origin, _), name in zip(parsed, names, strict=True)
    )


def _origin(value: object, where: str) -> httpx.URL | None:
    if value is None:
        return None
    url = as_origin(value)
    if url is None:
        shown = repr(redact_url(value)) if isinstance(value, str | httpx.URL) else repr(value)
        raise ConfigError(
            f"{where}: origin must be 'http(s)://host[:port]' with no path, query or "
            f"credentials, got {shown}"
        )
    return url
