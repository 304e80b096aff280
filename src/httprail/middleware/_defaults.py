"""The default middleware stack, built from settings."""

from __future__ import annotations

from .._pipeline import MiddlewarePlugin
from .._settings import HttpSettings
from ._circuit_breaker import CircuitBreaker
from ._logging import Logging
from ._metrics import Metrics
from ._retry import Retry
from ._timeout import Timeout

__all__ = ["default_plugins"]


def default_plugins(settings: HttpSettings | None = None) -> list[MiddlewarePlugin]:
    """The recommended stack, outermost first.

    ``Logging → Metrics → Timeout(total) → Retry → CircuitBreaker [→ Timeout(attempt)]``:
    retry sits outside the breaker so the breaker counts single attempts and an open circuit
    ends the remaining attempts at once; the attempt timeout is added when
    ``timeout_attempt`` is set.
    """
    s = settings if settings is not None else HttpSettings()
    plugins: list[MiddlewarePlugin] = [
        Logging(),
        Metrics(),
        Timeout(s.timeout_total, phase="total"),
        Retry.from_settings(s),
        CircuitBreaker.from_settings(s),
    ]
    if s.timeout_attempt is not None:
        plugins.append(Timeout(s.timeout_attempt, phase="attempt"))
    return plugins
