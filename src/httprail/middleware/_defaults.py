"""The default middleware stack, built from settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._args import need
from .._pipeline import MiddlewarePlugin
from .._settings import HttpSettings
from ._circuit_breaker import CircuitBreaker
from ._logging import Logging
from ._metrics import Metrics
from ._redirects import Redirects
from ._retry import Retry
from ._timeout import Timeout

__all__ = ["default_plugins"]


def default_plugins(
    settings: HttpSettings | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> list[MiddlewarePlugin]:
    """The recommended stack, outermost first.

    ``Logging → Metrics → Timeout(total) [→ Redirects] → Retry → CircuitBreaker
    [→ Timeout(attempt)]``: retry sits outside the breaker so the breaker counts single
    attempts and an open circuit ends the remaining attempts at once; ``Redirects`` is added
    when ``follow_redirects`` is on (``HTTP_FOLLOW_REDIRECTS``), the attempt timeout when
    ``timeout_attempt`` is set.

    Args:
        settings: the settings to build from (default: ``HttpSettings()``, the environment).
        clock: the one monotonic clock every stage reads (the timeouts' deadlines, the retry
            stage and its budget, the breaker): pass a ``FakeClock`` in tests, so that a
            deadline set by ``Timeout`` is compared with a time from the same clock.
        sleep: the retry stage's sleep (``FakeClock.sleep`` in tests).
    """
    need(settings is None or isinstance(settings, HttpSettings), "default_plugins", "settings",
         "an HttpSettings or None", settings)  # fmt: skip
    s = settings if settings is not None else HttpSettings()
    plugins: list[MiddlewarePlugin] = [
        Logging(),
        Metrics(),
        Timeout(s.timeout_total, phase="total", clock=clock),
        Retry.from_settings(s, clock=clock, sleep=sleep),
        CircuitBreaker.from_settings(s, clock=clock),
    ]
    if s.follow_redirects:
        plugins.insert(3, Redirects.from_settings(s))
    if s.timeout_attempt is not None:
        plugins.append(Timeout(s.timeout_attempt, phase="attempt", clock=clock))
    return plugins
