"""``MultiTerminal``: one terminal over several backends, with failover and per-backend health.

Each request goes to the backends in the order the strategy gives (``failover``: as listed;
``round_robin``: rotating; ``random``: shuffled), and moves on to the next one only when the
error proves that trying elsewhere is safe::

    Success, StatusError (any response)            → returned: never sent elsewhere
    ConnectError, RefusedStreamError,              → next backend (the request was never sent)
    connect/pool timeout
    other TransportError, read/write timeout       → next backend only for an idempotent request
    anything else                                  → returned
    a body that cannot be replayed (async stream)  → never sent twice

Health per backend: ``failure_threshold`` transport failures in a row (connect/read/write/
protocol errors and connect/read/write/pool timeouts; not a connection the server rotated,
``ConnectionRotatedError``/``RefusedStreamError``) make it unhealthy for ``cooldown``
seconds, during which it is skipped. After the cooldown one request is let through as a trial:
a response makes it healthy again, a transport failure starts a new cooldown. When no backend
can be used, the one whose last failure is the oldest is tried rather than failing untried.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Collection, Sequence
from typing import Literal

import httpx
from returns.result import Failure, Success

from .._args import need_callable, strings_of
from .._closing import close_all
from .._errors import (
    ConfigError,
    InvalidRequestError,
    RequestError,
    RequestTimeoutError,
    StatusError,
    TransportError,
)
from .._log import get_logger
from .._pipeline import TerminalPlugin
from .._redact import redact_url
from .._result import Outcome
from ._backends import (
    Backend,
    BackendHealth,
    BackendSpec,
    BackendState,
    Slot,
    parse_backends,
)
from ._mapping import map_exception

__all__ = ["Backend", "BackendHealth", "BackendSpec", "BackendState", "MultiTerminal", "Strategy"]

Strategy = Literal["failover", "round_robin", "random"]
"""How the order of backends is chosen for each request."""

# The same as httprail.middleware.IDEMPOTENT_METHODS (terminals do not import the middleware).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_STRATEGIES: tuple[Strategy, ...] = ("failover", "round_robin", "random")
_NEVER_SENT = frozenset({"connect", "pool"})
_SENT = frozenset({"read", "write"})

_log = get_logger("httprail.multi")


class MultiTerminal:
    """Spread requests over several backends; fail over on safe errors; skip sick backends.

    Backends are terminals, optionally with an origin: ``(HttpxTerminal(), "http://10.0.0.2")``
    sends each request there with its path and query unchanged (and the ``Host`` header set to
    match), so one service reachable at several origins fails over between them. A bare
    terminal sends the request to its own URL (several backend libraries for one origin).

    A backend is tried at most once per request; when the error is not one that may be sent
    elsewhere, or every backend was tried, the last backend's error is returned as it is, so
    ``Retry`` and ``CircuitBreaker`` outside judge it by its type. ``CancelledError``
    propagates.

    Args:
        backends: the backends, in failover order (see :data:`BackendSpec`).
        strategy: ``failover``, ``round_robin`` or ``random``.
        failure_threshold: transport failures in a row that make a backend unhealthy.
        cooldown: seconds an unhealthy backend is skipped before its trial.
        methods: methods failed over after the request may have been sent (read errors,
            read/write timeouts); a request with an ``Idempotency-Key`` header always is.
        clock: monotonic clock, injectable for tests.
        rng: the random source of the ``random`` strategy (e.g. ``random.Random(7)``).

    Example:
        >>> http = HttpxTerminal()  # doctest: +SKIP
        >>> terminal = MultiTerminal([(http, "https://eu.api.test"), (http, "https://us.api.test")])
        >>> client = AsyncClient("https://api.test", terminal=terminal)
    """

    name = "multi"

    def __init__(
        self,
        backends: Sequence[BackendSpec],
        *,
        strategy: Strategy = "failover",
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        methods: Collection[str] = IDEMPOTENT,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        chosen = strategy.replace("-", "_") if isinstance(strategy, str) else strategy
        if chosen not in _STRATEGIES:
            raise ConfigError(
                f"MultiTerminal(strategy=...) must be one of {', '.join(_STRATEGIES)}, "
                f"got {strategy!r}"
            )
        if (
            isinstance(failure_threshold, bool)
            or not isinstance(failure_threshold, int)
            or failure_threshold < 1
        ):
            raise ConfigError(
                f"MultiTerminal(failure_threshold=...) must be an int >= 1, "
                f"got {failure_threshold!r}"
            )
        if (
            isinstance(cooldown, bool)
            or not isinstance(cooldown, int | float)
            or not math.isfinite(cooldown)
            or cooldown <= 0
        ):
            raise ConfigError(
                f"MultiTerminal(cooldown=...) must be a finite number > 0, got {cooldown!r}"
            )
        methods = strings_of("MultiTerminal", "methods", methods, "method names, such as ['GET']")
        need_callable("MultiTerminal", "clock", clock)
        if rng is not None and not isinstance(rng, random.Random):
            raise ConfigError(f"MultiTerminal(rng=...) must be a random.Random, got {rng!r}")
        self.strategy: Strategy = chosen
        self.failure_threshold = failure_threshold
        self.cooldown = float(cooldown)
        self.methods = frozenset(m.upper() for m in methods)
        self._slots = parse_backends(backends)
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._cursor = 0
        self._closed = False

    def __repr__(self) -> str:
        names = ", ".join(slot.name for slot in self._slots)
        return f"MultiTerminal({self.strategy}: {names})"

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends' names, in the order given."""
        return tuple(slot.name for slot in self._slots)

    def health(self) -> tuple[BackendHealth, ...]:
        """A snapshot of every backend's health, in the order given."""
        now = self._clock()
        return tuple(
            BackendHealth(
                name=slot.name,
                origin=slot.origin,
                state=self._state(slot, now),
                consecutive_failures=slot.streak,
                requests=slot.requests,
                failures=slot.failures,
                last_failure_at=slot.last_failure_at,
                retry_in=(
                    0.0
                    if slot.down_since is None
                    else max(0.0, slot.down_since + self.cooldown - now)
                ),
                last_error=slot.last_error,
            )
            for slot in self._slots
        )

    def _state(self, slot: Slot, now: float) -> BackendState:
        if slot.down_since is None:
            return "healthy"
        return "unhealthy" if now - slot.down_since < self.cooldown else "trial"

    def _usable(self, slot: Slot, now: float) -> bool:
        return slot.down_since is None or (
            now - slot.down_since >= self.cooldown and not slot.trial
        )

    def _order(self) -> list[Slot]:
        """The backends in the order this request tries them (usable ones first)."""
        slots = self._slots
        if self.strategy == "failover":
            return list(slots)
        now = self._clock()
        usable = [slot for slot in slots if self._usable(slot, now)]
        rest = [slot for slot in slots if not self._usable(slot, now)]
        if self.strategy == "random":
            self._rng.shuffle(usable)
        elif usable:
            start = self._cursor % len(usable)
            self._cursor += 1
            usable = usable[start:] + usable[:start]
        return usable + rest

    def _admit(self, slot: Slot) -> bool | None:
        """``None``: skip it now; ``False``: send; ``True``: send as its one trial."""
        if slot.down_since is None:
            return False
        if slot.trial or self._clock() - slot.down_since < self.cooldown:
            return None
        slot.trial = True
        return True

    def fails_over(self, request: httpx.Request, error: RequestError) -> bool:
        """Whether ``error`` from one backend lets ``request`` be sent to the next."""
        if not isinstance(request.stream, httpx.ByteStream):
            return False  # a streamed upload cannot be sent twice
        if isinstance(error, TransportError) and error.never_processed:
            return True  # nothing reached a server (ConnectError, RefusedStreamError)
        if isinstance(error, RequestTimeoutError):
            if error.phase in _NEVER_SENT:
                return True
            if error.phase not in _SENT:
                return False
        elif not isinstance(error, TransportError):
            return False
        return request.method in self.methods or "idempotency-key" in request.headers

    async def send(self, request: httpx.Request) -> Outcome:
        """Send ``request`` to the first backend that answers, as the strategy orders them."""
        if self._closed:
            return Failure(InvalidRequestError("the terminal is closed", request=request))
        outcome: Outcome | None = None
        for slot in self._order():
            trial = self._admit(slot)
            if trial is None:
                continue
            if outcome is not None:
                _log.info(
                    "httprail.multi.failover",
                    to=slot.name,
                    error=type(outcome.failure()).__name__,
                    url=redact_url(request.url),
                )
            outcome = await self._attempt(slot, request, trial=trial)
            if type(outcome) is Success or not self.fails_over(request, outcome.failure()):
                return outcome
        if outcome is None:  # every backend is cooling down: try the one that failed longest ago
            fallback = min(
                self._slots,
                key=lambda s: -math.inf if s.last_failure_at is None else s.last_failure_at,
            )
            outcome = await self._attempt(fallback, request, trial=False)
        return outcome

    async def _attempt(self, slot: Slot, request: httpx.Request, *, trial: bool) -> Outcome:
        slot.requests += 1
        sent = slot.target(request)
        try:
            try:
                outcome = await slot.terminal.send(sent)
            except Exception as exc:  # noqa: BLE001 - a backend that raises breaks its contract
                outcome = Failure(map_exception(exc, sent))
            self._record(slot, outcome)
        finally:
            if trial:
                slot.trial = False
        return outcome

    def _record(self, slot: Slot, outcome: Outcome) -> None:
        error = outcome.failure() if type(outcome) is Failure else None
        if error is None or isinstance(error, StatusError):  # the backend answered
            slot.streak = 0
            slot.down_since = None
            return
        if not error.counts_against_upstream or (
            not isinstance(error, TransportError)
            and not (isinstance(error, RequestTimeoutError) and error.phase in _NEVER_SENT | _SENT)
        ):
            # not the backend's fault: an invalid request, a decoding error, a connection it
            # rotated (ConnectionRotatedError, RefusedStreamError: a healthy server's way)
            return
        now = self._clock()
        slot.streak += 1
        slot.failures += 1
        slot.last_failure_at = now
        slot.last_error = error
        if slot.down_since is not None or slot.streak >= self.failure_threshold:
            if slot.down_since is None:
                _log.warning(
                    "httprail.multi.unhealthy",
                    backend=slot.name,
                    failures=slot.streak,
                    cooldown=self.cooldown,
                    error=type(error).__name__,
                )
            slot.down_since = now

    async def aclose(self) -> None:
        """Close every backend's terminal once, even if closing one of them raises.

        Raises:
            Exception: what a terminal raised when closed (an ``ExceptionGroup`` if several).
        """
        self._closed = True
        terminals: list[TerminalPlugin] = []
        for slot in self._slots:
            if not any(slot.terminal is seen for seen in terminals):
                terminals.append(slot.terminal)
        await close_all((t.aclose for t in terminals), "MultiTerminal backends")
