"""``Logging``: one event per request, retry and breaker transition, secrets redacted, to the
stdlib logger ``httprail.http`` (or structlog, when the application configured it)."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import httpx
from returns.result import Failure

from .._args import need_callable
from .._context import get_context, upstream_of
from .._errors import ConfigError, RequestError, StatusError
from .._events import BreakerEvent, Event, RetryEvent
from .._log import Logger, get_logger
from .._redact import redact_text, redact_url
from .._result import Next, Outcome
from ._request_id import request_id_of

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
    """Log one event per request, and one per retry and breaker transition.

    Events: ``http.request`` (method, redacted url, status, attempt, duration_ms, upstream,
    request_id, and the error type for failures), ``http.retry`` and ``http.breaker``. They go
    to the stdlib logger ``httprail.http``, fields in the record (see ``docs/observability.md``),
    or to structlog when the application configured it; nothing is printed until the
    application configures one of them. URLs lose userinfo
    and credential query values; error messages pass through the redaction rule
    (``docs/security.md``); headers are never logged. Only the failure path redacts text: a
    success logs the method, the redacted URL and numbers.

    By default successful requests are logged at ``debug``, failures and breaker transitions
    at ``warning`` and retries at ``info``; events below ``min_level`` (``info``) are not built
    at all, and neither is one the logger would drop (it is asked first), so an unconfigured
    application pays one level check per failure.

    Args:
        logger: where events go: a logger name, a stdlib ``logging.Logger`` (always used,
            structlog or not), or any object with ``debug/info/warning/error(event, **fields)``
            methods such as a structlog logger (default: ``"httprail.http"``).
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
            if not isinstance(level, str) or level not in _LEVELS:
                raise ConfigError(
                    f"Logging({label}=...) must be one of {sorted(_LEVELS)}, got {level!r}"
                )
        need_callable("Logging", "clock", clock)
        self._logger = _logger_of(logger)
        self._enabled = getattr(self._logger, "is_enabled_for", None)
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
        request_id = request_id_of(request)
        if request_id is not None:
            fields["request_id"] = request_id
        if failed:
            fields.update(describe_error(outcome.failure()))
        else:
            fields["status"] = outcome.unwrap().status_code
        getattr(self._logger, level)("http.request", **fields)
        return outcome

    def _wants(self, level: str) -> bool:
        """Whether the logger keeps ``level`` events (asked first: building one costs ~20 µs).

        httprail's and structlog's loggers answer ``is_enabled_for``; a logger that cannot is
        given the event.
        """
        enabled = self._enabled
        return enabled is None or bool(enabled(_LEVELS[level]))

    def on_event(self, event: Event) -> None:
        """Log a retry or a breaker transition."""
        if isinstance(event, RetryEvent):
            if self._retry is not None and self._wants(self._retry):
                request_id = request_id_of(event.request)
                getattr(self._logger, self._retry)(
                    "http.retry",
                    method=event.request.method,
                    url=redact_url(event.request.url),
                    attempt=event.attempt,
                    delay_s=round(event.delay, 3),
                    delay_source=event.delay_source,
                    **describe_error(event.error),
                    **({} if request_id is None else {"request_id": request_id}),
                )
        elif (
            isinstance(event, BreakerEvent)
            and self._breaker is not None
            and self._wants(self._breaker)
        ):
            request_id = None if event.request is None else request_id_of(event.request)
            getattr(self._logger, self._breaker)(
                "http.breaker",
                upstream=event.upstream,
                old=event.old.value,
                new=event.new.value,
                reason=event.reason,
                **({} if request_id is None else {"request_id": request_id}),
            )


def _logger_of(logger: Any) -> Any:
    """What ``Logging(logger=...)`` writes to (see its docstring)."""
    if logger is None:
        return get_logger("httprail.http")
    if isinstance(logger, str):
        return get_logger(logger)
    if isinstance(logger, logging.Logger):
        return Logger(logger.name, stdlib=logger)
    return logger
