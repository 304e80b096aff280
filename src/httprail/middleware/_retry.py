"""``Retry``: try again, safely, when the failure is worth it.

The first attempt runs with no retry machinery at all; only a failure enters the loop. The
loop's state for one request is a frozen :class:`RetryState` replaced per attempt, with the
``history`` of every attempt's error. Backoff delays come from a tenacity wait strategy
(full jitter by default), so any ``tenacity.wait_*`` can be passed in. An optional
:class:`RetryBudget` caps retries per upstream to a share of recent traffic.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity
from returns.result import Failure, Success

from .._args import need_callable, statuses_of, strings_of
from .._context import EXTENSION_KEY, get_context, upstream_of
from .._errors import (
    ConfigError,
    MaxRetriesExceededError,
    RequestError,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    StatusError,
    TransportError,
)
from .._events import RetryEvent, emit, rejected
from .._log import get_logger
from .._result import Next, Outcome
from .._settings import DEFAULT_RETRY_STATUSES, HttpSettings
from ..state._shared import SharedBudgetStore
from ._retry_after import parse_server_delay
from ._retry_budget import RetryBudget

__all__ = [
    "IDEMPOTENT_METHODS",
    "NO_RETRY_EXTENSION",
    "REFUSED_STATUSES",
    "RETRY_STATUSES_EXTENSION",
    "Retry",
    "RetryState",
    "RetryVeto",
]

NO_RETRY_EXTENSION = "httprail.no_retry"
"""Request extension holding a :data:`RetryVeto`: who sends a request may say which error
responses must not be retried whatever their status (e.g. a 429 that means "out of quota")."""

RetryVeto = Callable[[httpx.Response], bool]
"""Given an error response, ``True`` means: do not retry it."""

RETRY_STATUSES_EXTENSION = "httprail.retry_statuses"
"""Request extension holding a collection of statuses that ``Retry`` also retries for this
request, besides its own ``retry_statuses``: who sends a request may say what it would have
retried itself (``as_httpx_transport()`` puts the SDKs' statuses there)."""

REFUSED_STATUSES = frozenset({429})
"""Statuses that say the server refused the request without acting on it (429 Too Many
Requests): retried, when their status is retried at all, for any method."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_RETRYABLE_TIMEOUT_PHASES = frozenset({"connect", "pool", "read", "write", "attempt"})

_log = get_logger("httprail.retry")

Sleep = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class RetryState:
    """Where one request's retrying stands: the attempt just made and every error so far."""

    attempt: int
    history: tuple[RequestError, ...]

    def record(self, error: RequestError) -> RetryState:
        """The state after ``error`` (the next attempt's number, the longer history)."""
        return RetryState(self.attempt + 1, (*self.history, error))


@dataclass(frozen=True, slots=True)
class _Decision:
    delay: float | None  # None: stop and return the outcome as it is
    source: str = "backoff"
    exhausted: bool = False


_STOP = _Decision(None)
_EXHAUSTED = _Decision(None, exhausted=True)


class Retry:
    """Retry transient failures with jittered exponential backoff, honouring the server.

    What is retried: statuses in ``retry_statuses`` (408, 429, 500, 502, 503, 504, 529 by
    default) and in the request's :data:`RETRY_STATUSES_EXTENSION`, connect/read/write/protocol
    errors and connect/read/write/pool/attempt timeouts. Never other 4xx, an open breaker, a
    total timeout or a decoding error.

    Only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) are retried, unless the
    request carries an ``Idempotency-Key`` header or the server certainly did not act on it: an
    error whose ``never_processed`` is true (a refused connection), a connect or pool timeout,
    a 429, or a response saying ``x-should-retry: true``. A body that cannot be replayed (an
    async generator) is never retried.

    The server is honoured: ``retry-after-ms``, then ``Retry-After`` (seconds or HTTP-date)
    replace the backoff; ``x-should-retry: false`` stops, ``true`` retries any status. A
    requested wait above ``retry_after_max`` or past the call's deadline ends retrying at once
    with that response's ``StatusError``. Running out of attempts gives
    ``MaxRetriesExceededError`` holding every attempt's error.

    With a ``budget``, every logical call deposits into it once (under the request's upstream
    key, as the breaker uses) and every retry must withdraw from it first. When the budget is
    empty the call ends at once, without sleeping, with ``RetryBudgetExhaustedError`` (a
    ``MaxRetriesExceededError`` holding the attempts made so far). ``from_settings`` and the
    default stack give each stage its own budget; a stage built by hand has none unless given
    one, and one budget given to several stages is shared by all of them.

    Args:
        max_retries: retries after the first attempt (3 → at most 4 attempts).
        backoff_base: the first backoff window, seconds; it doubles per retry.
        backoff_max: the largest backoff window, seconds.
        retry_after_max: the longest server-requested wait that is obeyed, seconds.
        retry_statuses: which statuses are retried.
        methods: which methods are retried without an Idempotency-Key.
        wait: a tenacity wait strategy replacing the default full-jitter backoff.
        sleep: the sleep function (inject a fake for tests).
        clock: monotonic clock, compared with the context's deadline.
        wall_clock: Unix time, for HTTP-date ``Retry-After`` values.
        budget: the :class:`RetryBudget` retries are drawn from (``None``: no budget).

    Example:
        >>> budget = RetryBudget(ratio=0.2, min_per_second=10, window=10)
        >>> stack = [Retry(max_retries=3, budget=budget), CircuitBreaker()]  # doctest: +SKIP
    """

    name = "retry"

    def __init__(
        self,
        *,
        max_retries: int = 3,
        backoff_base: float = 1.0,
        backoff_max: float = 20.0,
        retry_after_max: float = 60.0,
        retry_statuses: Collection[int] = DEFAULT_RETRY_STATUSES,
        methods: Collection[str] = IDEMPOTENT_METHODS,
        wait: tenacity.wait.wait_base | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        budget: RetryBudget | None = None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"Retry(max_retries=...) must be an int >= 0, got {max_retries!r}")
        for label, value in (
            ("backoff_base", backoff_base),
            ("backoff_max", backoff_max),
            ("retry_after_max", retry_after_max),
        ):
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"Retry({label}=...) must be a finite number > 0, got {value!r}")
        if backoff_base > backoff_max:
            raise ConfigError(
                f"Retry(backoff_base={backoff_base}) must be <= backoff_max={backoff_max}"
            )
        statuses = statuses_of("Retry", "retry_statuses", retry_statuses)
        methods = strings_of("Retry", "methods", methods, "method names, such as ['GET']")
        need_callable("Retry", "wait", wait, optional=True)  # a tenacity wait strategy
        for label, fn in (("sleep", sleep), ("clock", clock), ("wall_clock", wall_clock)):
            need_callable("Retry", label, fn)
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigError(f"Retry(budget=...) must be a RetryBudget or None, got {budget!r}")
        self.max_retries = max_retries
        self.retry_after_max = float(retry_after_max)
        self.retry_statuses = statuses
        self.methods = frozenset(m.upper() for m in methods)
        self.wait = wait or tenacity.wait_random_exponential(
            multiplier=backoff_base, max=backoff_max
        )
        # Backoff strategies receive a tenacity call state bound to this policy object.
        self._policy = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(max_retries + 1), wait=self.wait, sleep=sleep
        )
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self.budget = budget

    @classmethod
    def from_settings(
        cls, settings: HttpSettings, *, store: SharedBudgetStore | None = None, **overrides: Any
    ) -> Retry:
        """A retry stage configured from ``settings`` (keyword arguments win).

        When ``settings.retry_budget`` is on and no ``budget`` is given, the stage gets a
        :class:`RetryBudget` of its own from the ``retry_budget_*`` settings, on the same
        ``clock`` as the stage, and on ``store`` when one is given (a budget shared by
        processes: ``store = "redis"`` in a stack file).

        Raises:
            ConfigError: a ``store`` with a ``budget`` given too, or with the budget off.
        """
        options: dict[str, Any] = {
            "max_retries": settings.max_retries,
            "backoff_base": settings.backoff_base,
            "backoff_max": settings.backoff_max,
            "retry_after_max": settings.retry_after_max,
            "retry_statuses": settings.retry_statuses,
        }
        options.update(overrides)
        if store is not None and ("budget" in options or not settings.retry_budget):
            raise ConfigError(
                "Retry.from_settings(store=...) is the store of the budget it builds: it takes "
                "no budget= and needs retry_budget on (HTTP_RETRY_BUDGET)"
            )
        if "budget" not in options and settings.retry_budget:
            clock = options.get("clock", time.monotonic)
            options["budget"] = RetryBudget.from_settings(settings, clock=clock, store=store)
        return cls(**options)

    def __repr__(self) -> str:
        return f"Retry(max_retries={self.max_retries})"

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        budget, upstream = self.budget, None
        if budget is not None:
            upstream = upstream_of(request)
            budget.deposit(upstream)
        outcome = await call_next(request)
        if type(outcome) is Success:
            return outcome
        return await self._retry(request, call_next, outcome, upstream)

    async def _retry(
        self, request: httpx.Request, call_next: Next, outcome: Outcome, upstream: str | None
    ) -> Outcome:
        """Retry after a failed first attempt (if retries are allowed); ``upstream`` is the
        budget's key, if any.

        A retry draws on the budget when the error before it counts against the upstream: a
        connection the server rotated (``ConnectionRotatedError``, ``RefusedStreamError``) is
        retried without spending it. A call none of whose attempts reached the upstream (each
        ended in such an error) takes its deposit back: it was not the upstream's traffic.
        """
        budget = self.budget
        reached = outcome.failure().counts_against_upstream
        try:
            if self.max_retries == 0:
                return outcome
            base_ctx = get_context(request)
            state = RetryState(base_ctx.attempt, ())
            while type(outcome) is Failure:
                error = outcome.failure()
                decision = self._decide(request, error, state.attempt, base_ctx.deadline)
                state = state.record(error)
                if decision.delay is None:
                    if decision.exhausted:
                        return Failure(MaxRetriesExceededError(state.history, request=request))
                    return outcome
                if (
                    budget is not None
                    and upstream is not None
                    and error.counts_against_upstream
                    and not (
                        budget.try_withdraw(upstream)
                        if budget.store is None
                        else await budget.withdraw(upstream)  # shared: one call to the store
                    )
                ):
                    # The budget is empty: stop now, without the sleep.
                    spent = RetryBudgetExhaustedError(
                        state.history, upstream=upstream, request=request
                    )
                    return rejected(request, upstream, "retry_budget", spent)
                emit(
                    base_ctx.observers,
                    RetryEvent(request, state.attempt - 1, decision.delay, error, decision.source),
                )
                await self._sleep(decision.delay)
                request.extensions[EXTENSION_KEY] = base_ctx.replace(attempt=state.attempt)
                outcome = await call_next(request)
                if type(outcome) is Success or outcome.failure().counts_against_upstream:
                    reached = True
            return outcome
        finally:
            if not reached and budget is not None and upstream is not None:
                budget.refund(upstream)  # no attempt reached it: not its traffic

    def _decide(
        self, request: httpx.Request, error: RequestError, attempt: int, deadline: float | None
    ) -> _Decision:
        """Whether and when to try again after ``error`` ended attempt number ``attempt``."""
        never_sent = error.never_processed
        if isinstance(error, StatusError):
            status = error.status_code
            hint = error.response.headers.get("x-should-retry", "").strip().lower()
            if hint == "false" or _vetoed(request, error.response):
                return _STOP
            if hint == "true" or status in REFUSED_STATUSES:
                never_sent = True  # the server says a repeat is fine, or refused it unprocessed
            if hint != "true" and not self._retried_status(request, status):
                return _STOP
        elif isinstance(error, RequestTimeoutError):
            if error.phase not in _RETRYABLE_TIMEOUT_PHASES:
                return _STOP
        elif not isinstance(error, TransportError):
            return _STOP
        if not never_sent and not self._safe_to_repeat(request):
            return _STOP
        if not isinstance(request.stream, httpx.ByteStream):
            return _STOP  # a streamed upload cannot be sent twice
        if attempt > self.max_retries:
            return _EXHAUSTED
        delay, source = self._backoff(attempt), "backoff"
        if not error.counts_against_upstream:
            # The connection ended (a rotation), the upstream did not fail: nothing to back off
            # from, and a retry at once lands on a fresh connection rather than on a random
            # point of the next one's life (ConnectionRotatedError, RefusedStreamError).
            delay, source = 0.0, "connection"
        if isinstance(error, StatusError):
            asked = parse_server_delay(error.response.headers, self._wall_clock())
            if asked.malformed is not None:
                _log.warning(
                    "httprail.retry_after_malformed",
                    value=asked.malformed,
                    status=error.status_code,
                    using="backoff",
                )
            if asked.seconds is not None:
                if asked.seconds > self.retry_after_max:
                    return _STOP
                delay, source = asked.seconds, asked.source
        if deadline is not None and self._clock() + delay >= deadline:
            return _STOP
        return _Decision(delay, source)

    def _retried_status(self, request: httpx.Request, status: int) -> bool:
        if status in self.retry_statuses:
            return True
        extra = request.extensions.get(RETRY_STATUSES_EXTENSION)
        return extra is not None and status in extra

    def _safe_to_repeat(self, request: httpx.Request) -> bool:
        return request.method in self.methods or "idempotency-key" in request.headers

    def _backoff(self, attempt: int) -> float:
        call_state = tenacity.RetryCallState(self._policy, None, (), {})
        call_state.attempt_number = attempt
        return max(0.0, float(self.wait(call_state)))


def _vetoed(request: httpx.Request, response: httpx.Response) -> bool:
    veto = request.extensions.get(NO_RETRY_EXTENSION)
    if veto is None:
        return False
    try:
        return bool(veto(response))
    except Exception as exc:  # noqa: BLE001 - a broken veto must not break the call
        _log.warning("httprail.retry_veto_failed", error=repr(exc), status=response.status_code)
        return False
