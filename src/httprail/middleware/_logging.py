"""``Logging``: structlog events per request, retry and breaker transition, secrets redacted."""

from __future__ import annotations

import time
from typing import Any, Literal

import httpx
import structlog
from returns.result import Failure

from .._context import get_context, upstream_of
from .._errors import ConfigError, RequestError, StatusError
from .._events import BreakerEvent, Event, RetryEvent
from .._redact import redact_text, redact_url
from .._result import Next, Outcome

__all__ = ["Logging"]

Level = Literal["debug", "info", "warning", "error"]
_LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def describe_error(error: RequestError) -> dict[str, Any]:
    """Log fields for an error: its type, a redacted message and the status if it has one.

    The message passes through :func:`~httprail._redact.redact_text` with the error's request
    (messages are redacted when built; this also catches one set afterwards).
    """
    message = redact_text(error.message, error.request)
    fields: dict[str, Any] = {"error": type(error).__name__, "error_message": message}
    if isinstance(error, StatusError):
        fields["status"] = error.status_code
    return fields


class Logging:
    """Emit one structlog event per request, and one per retry and breaker transition.

    Events: ``http.request`` (method, redacted url, status, attempt, duration_ms, upstream,
    and the error type for failures), ``http.retry`` and ``http.breaker``. URLs lose userinfo
    and credential query values; error messages pass through the redaction rule
    (``docs/security.md``); headers are never logged. Only the failure path redacts text: a
    success logs the method, the redacted URL and numbers.

    By default successful requests are logged at ``debug``, failures and breaker transitions
    at ``warning`` and retries at ``info``; events below ``min_level`` (``info``) are not built
    at all, so a quiet logger costs nothing per request.

    Args:
        logger: a structlog logger (default: ``structlog.get_logger("httprail")``).
        min_level: the lowest level emitted.
        success_level / failure_level: levels for completed requests.
        retry_level / breaker_level: levels for retries and breaker transitions.
        clock: timer for durations.
    """

    name = "logging"

    def __init__(
        self,
        *,
        logger: Any = None,
        min_level: Level = "info",
        success_level: Level = "debug",
        failure_level: Level = "warning",
        retry_level: Level = "info",
        breaker_level: Level = "warning",
        clock: Any = time.perf_counter,
    ) -> None:
        for label, level in (
            ("min_level", min_level),
            ("success_level", success_level),
            ("failure_level", failure_level),
            ("retry_level", retry_level),
            ("breaker_level", breaker_level),
        ):
            if level not in _LEVELS:
                raise ConfigError(
                    f"Logging({label}=...) must be one of {sorted(_LEVELS)}, got {level!r}"
                )
        self._logger = logger if logger is not None else structlog.get_logger("httprail")
        floor = _LEVELS[min_level]
        self._success = success_level if _LEVELS[success_level] >= floor else None
        self._failure = failure_level if _LEVELS[failure_level] >= floor else None
        self._retry = retry_level if _LEVELS[retry_level] >= floor else None
        self._breaker = breaker_level if _LEVELS[breaker_level] >= floor else None
        self._clock = clock

    async def __call__(self, request: httpx.Request, call_next: Next) -> Outcome:
        if self._success is None and self._failure is None:
            return await call_next(request)
        start = self._clock()
        outcome = await call_next(request)
        failed = type(outcome) is Failure
        level = self._failure if failed else self._success
        if level is None or not self._wants(level):
            return outcome
        fields: dict[str, Any] = {
            "method": request.method,
            "url": redact_url(request.url),
            "upstream": upstream_of(request),
            "attempt": get_context(request).attempt,
            "duration_ms": round((self._clock() - start) * 1000.0, 3),
        }
        if failed:
            fields.update(describe_error(outcome.failure()))
        else:
            fields["status"] = outcome.unwrap().status_code
        getattr(self._logger, level)("http.request", **fields)
        return outcome

    def _wants(self, level: str) -> bool:
        """Whether the logger keeps ``level`` events (asked first: building one costs ~20 µs).

        structlog's loggers answer ``is_enabled_for``; a logger that cannot is given the event.
        """
        enabled = getattr(self._logger, "is_enabled_for", None)
        return enabled is None or bool(enabled(_LEVELS[level]))

    def on_event(self, event: Event) -> None:
        """Log a retry or a breaker transition."""
        if isinstance(event, RetryEvent):
            if self._retry is not None and self._wants(self._retry):
                getattr(self._logger, self._retry)(
                    "http.retry",
                    method=event.request.method,
                    url=redact_url(event.request.url),
                    attempt=event.attempt,
                    delay_s=round(event.delay, 3),
                    delay_source=event.delay_source,
                    **describe_error(event.error),
                )
        elif (
            isinstance(event, BreakerEvent)
            and self._breaker is not None
            and self._wants(self._breaker)
        ):
            getattr(self._logger, self._breaker)(
                "http.breaker",
                upstream=event.upstream,
                old=event.old.value,
                new=event.new.value,
                reason=event.reason,
            )
